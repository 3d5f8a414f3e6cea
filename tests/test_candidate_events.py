"""Candidate service events against a real RabbitMQ and FerretDB: the election replica
converges on created/updated/deleted, applies every event once and in version order
(duplicates and stale events are acked and counted), parks poison messages in the
dead-letter queue at once, survives a database outage through the retry queue, and is
rebuilt by the election service's replay; candidate changes publish exactly one event
each through the outbox, and drops publish deletes."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pika
import pytest
import requests

from events import EventTap
from harness import admin_request as admin, free_port, wait_until

ELECTION = {"title": "2016 Presidential Election", "date": "2016-11-08",
            "electionType": "FEDERAL", "description": "58th"}
CANDIDATE = {"firstName": "Hillary", "lastName": "Clinton", "politicalParty": "Democratic Party",
             "election": ELECTION["title"], "homeState": "New York",
             "politcalExperience": "67th Secretary of State"}
QUEUE = "candidate.elections"  # the logical name (metric labels); on the broker: queue(QUEUE)


# ---- helpers ----

def channel_call(rabbit, fn):
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        return fn(conn.channel())
    finally:
        conn.close()


def queue_depth(rabbit, name):
    return channel_call(rabbit, lambda ch: ch.queue_declare(name, passive=True).method.message_count)


def wait_consuming(rabbit, name):
    """Until the service consumes its queue (declared and bound: events are not lost)."""
    wait_until(lambda: channel_call(rabbit, lambda ch: ch.queue_declare(name, passive=True)
                                    .method.consumer_count) >= 1,
               timeout=15, message=f"a consumer on {name}")


def start_candidate(service_factory, rabbit, queue, election=None, env=None):
    full_env = {"ELECTION_URL": election.url if election else f"http://127.0.0.1:{free_port()}"}
    full_env.update(env or {})
    svc = service_factory("candidate", env=full_env)
    wait_consuming(rabbit, queue(QUEUE))
    svc.api = svc.url + "/candidate"
    return svc


def election_event(action, eid, version, **data):
    """A CloudEvent shaped like the election service's."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if action == "deleted":
        payload = {"id": eid, "version": version}
    else:
        payload = {"id": eid, "title": ELECTION["title"], "date": "2016-11-08T00:00:00.000+0000",
                   "electionType": "FEDERAL", "description": None, "version": version}
        payload.update(data)
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "type": f"election.{action}",
            "source": "/election", "subject": eid, "time": now,
            "datacontenttype": "application/json", "version": version, "data": payload}


def publish(rabbit, exchange, event, routing_key=None):
    """Publishes to the events exchange (declared by the service: never declare it here)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    key = routing_key or event["type"]

    def send(ch):
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, body, pika.BasicProperties(
            content_type="application/cloudevents+json", delivery_mode=2,
            message_id=None if isinstance(event, bytes) else event["id"]))
    channel_call(rabbit, send)


def metric(svc, name, **labels):
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "} "
    for line in requests.get(f"{svc.api}/metrics", timeout=5).text.splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


def replica_item(svc, eid):
    r = requests.get(f"{svc.api}/elections/{eid}", timeout=5)
    return r.json() if r.status_code == 200 else None


def new_id():
    return uuid.uuid4().hex[:24]


@pytest.fixture
def stack(service_factory, rabbit, queue):
    election = service_factory("election")
    candidate = start_candidate(service_factory, rabbit, queue, election)
    return SimpleNamespace(election=election, candidate=candidate,
                           eapi=election.url + "/election", api=candidate.api)


# ---- propagation ----

def test_election_create_update_delete_converges_in_the_replica(stack):
    r = requests.post(f"{stack.eapi}/elections", json=ELECTION)
    source = r.json()
    eid = source["id"]
    got = wait_until(lambda: replica_item(stack.candidate, eid), timeout=15)
    assert got["title"] == ELECTION["title"] and got["version"] == 1
    assert got["date"] == source["date"] and got["electionType"] == "FEDERAL"
    cand = requests.post(f"{stack.api}/candidates", json=CANDIDATE)
    assert cand.status_code == 201, cand.text

    requests.put(f"{stack.eapi}/elections/{eid}", json=dict(ELECTION, description="changed"))
    requests.patch(f"{stack.eapi}/elections/{eid}", json={"electionType": "STATE"})
    got = wait_until(lambda: (replica_item(stack.candidate, eid) or {}).get("version") == 3
                     and replica_item(stack.candidate, eid), timeout=15)
    assert got["description"] == "changed" and got["electionType"] == "STATE"

    assert requests.delete(f"{stack.eapi}/elections/{eid}").status_code == 204
    wait_until(lambda: requests.get(f"{stack.api}/elections/{eid}").status_code == 404, timeout=15)
    assert requests.get(f"{stack.api}/elections").json()["page"]["totalElements"] == 0
    search = requests.get(f"{stack.api}/elections/search/findByElectionTypeContaining",
                          params={"electionType": "STATE"}).json()
    assert search["page"]["totalElements"] == 0
    # its title is no longer a known election for new candidates ...
    r = requests.post(f"{stack.api}/candidates", json=dict(CANDIDATE, firstName="Bill"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "election"
    # ... but a candidate that already stands in it can still be corrected
    cid = cand.json()["id"]
    r = requests.patch(f"{stack.api}/candidates/{cid}", json={"homeState": "Illinois"})
    assert r.status_code == 200, r.text
    # and re-creating the election (a new id, same title) makes the title known again
    again = requests.post(f"{stack.eapi}/elections", json=ELECTION).json()
    wait_until(lambda: replica_item(stack.candidate, again["id"]), timeout=15)
    assert requests.post(f"{stack.api}/candidates", json=dict(CANDIDATE, firstName="Bill")).status_code == 201


# ---- candidate events through the outbox ----

def test_one_candidate_event_per_change_with_type_id_and_version(stack, rabbit, amqp_exchange):
    requests.post(f"{stack.eapi}/elections", json=ELECTION)
    wait_until(lambda: requests.get(f"{stack.api}/elections").json()["page"]["totalElements"] == 1,
               timeout=15)
    tap = EventTap(rabbit.url, amqp_exchange, keys=("candidate.*",))
    try:
        api = f"{stack.api}/candidates"
        item = requests.post(api, json=CANDIDATE).json()
        cid = item["id"]
        requests.put(f"{api}/{cid}", json=dict(CANDIDATE, homeState="Illinois"))
        requests.patch(f"{api}/{cid}", json={"politicalExperience": "Senator"})
        # rejected writes publish nothing
        assert requests.post(api, json=CANDIDATE).status_code == 409
        assert requests.post(api, json=dict(CANDIDATE, election="Nope")).status_code == 422
        assert requests.patch(f"{api}/{cid}", json={"x": 1}).status_code == 422
        assert requests.delete(f"{api}/{'0' * 24}").status_code == 404
        assert requests.put(f"{api}/{cid}", json=CANDIDATE, headers={"If-Match": '"9"'}).status_code == 412
        requests.delete(f"{api}/{cid}")
        events = tap.wait_for(4)
        time.sleep(1.0)  # a duplicate would arrive within the relay's poll interval
        tap.drain()
        assert [(e["type"], e["subject"], e["version"]) for e in tap.events] == [
            ("candidate.created", cid, 1), ("candidate.updated", cid, 2),
            ("candidate.updated", cid, 3), ("candidate.deleted", cid, 4)]
        created = events[0]
        assert created["specversion"] == "1.0" and created["source"] == "/candidate"
        assert created["datacontenttype"] == "application/json" and created["time"].endswith("Z")
        assert created["data"] == {k: v for k, v in item.items() if k != "_links"}
        assert created["data"]["fullName"] == "Hillary Clinton"
        assert events[1]["data"]["homeState"] == "Illinois" and events[1]["data"]["version"] == 2
        assert events[2]["data"]["politcalExperience"] == "Senator"
        assert "politicalExperience" not in events[2]["data"]
        assert events[3]["data"] == {"id": cid, "version": 4}
        assert all(e["_routing_key"] == e["type"] and e["_message_id"] == e["id"] for e in events)
    finally:
        tap.close()


def test_drop_candidates_emits_a_delete_each_and_replay_republishes(stack, rabbit, amqp_exchange):
    requests.post(f"{stack.eapi}/elections", json=ELECTION)
    wait_until(lambda: requests.get(f"{stack.api}/elections").json()["page"]["totalElements"] == 1,
               timeout=15)
    tap = EventTap(rabbit.url, amqp_exchange, keys=("candidate.*",))
    try:
        ids = [requests.post(f"{stack.api}/candidates", json=dict(CANDIDATE, firstName=f"C{i}")).json()["id"]
               for i in range(3)]
        tap.wait_for(3)
        r = admin("POST", f"{stack.api}/events/replay")
        assert r.status_code == 202 and r.json() == {"republished": 3}
        events = tap.wait_for(6)
        replayed = [e for e in events[3:] if e["type"] == "candidate.updated"]
        assert sorted((e["subject"], e["version"]) for e in replayed) == sorted((i, 1) for i in ids)
        assert admin("POST", f"{stack.api}/drop/candidates").status_code == 204
        events = tap.wait_for(9)
        deleted = [e for e in events if e["type"] == "candidate.deleted"]
        assert sorted((e["subject"], e["version"]) for e in deleted) == sorted((i, 2) for i in ids)
        assert all(e["data"] == {"id": e["subject"], "version": 2} for e in deleted)
        time.sleep(0.5)
        assert len(tap.drain()) == 9
    finally:
        tap.close()


# ---- delivery faults on the replica's queue ----

def test_duplicate_delivery_is_applied_once(service_factory, rabbit, amqp_exchange, queue):
    svc = start_candidate(service_factory, rabbit, queue)
    eid = new_id()
    event = election_event("created", eid, 1)
    publish(rabbit, amqp_exchange, event)
    publish(rabbit, amqp_exchange, event)  # the very same message again
    wait_until(lambda: metric(svc, "replica_events_total", collection="elections", result="duplicate") == 1,
               timeout=15)
    assert metric(svc, "replica_events_total", collection="elections", result="applied") == 1
    assert replica_item(svc, eid)["version"] == 1
    wait_until(lambda: metric(svc, "events_consumed_total", queue=QUEUE, result="ack") == 2,
               timeout=10)  # counted after the ack, just after the apply
    # a replay of the same version through another message id is a duplicate too
    publish(rabbit, amqp_exchange, election_event("updated", eid, 1))
    wait_until(lambda: metric(svc, "replica_events_total", collection="elections", result="duplicate") == 2,
               timeout=15)
    assert requests.get(f"{svc.api}/elections").json()["page"]["totalElements"] == 1


def test_out_of_order_delivery_ends_at_the_newest_version(service_factory, rabbit, amqp_exchange, queue):
    svc = start_candidate(service_factory, rabbit, queue)
    eid = new_id()
    publish(rabbit, amqp_exchange, election_event("updated", eid, 2, description="v2"))
    publish(rabbit, amqp_exchange, election_event("created", eid, 1, description="v1"))
    wait_until(lambda: metric(svc, "replica_events_total", collection="elections", result="stale") == 1,
               timeout=15)
    got = replica_item(svc, eid)
    assert got["version"] == 2 and got["description"] == "v2"
    assert metric(svc, "replica_events_total", collection="elections", result="applied") == 1


def test_delete_tombstone_blocks_a_late_older_update(service_factory, rabbit, amqp_exchange, queue):
    svc = start_candidate(service_factory, rabbit, queue)
    eid = new_id()
    publish(rabbit, amqp_exchange, election_event("created", eid, 1))
    publish(rabbit, amqp_exchange, election_event("deleted", eid, 3))
    publish(rabbit, amqp_exchange, election_event("updated", eid, 2, description="late"))
    wait_until(lambda: metric(svc, "replica_events_total", collection="elections", result="stale") == 1,
               timeout=15)
    assert metric(svc, "replica_events_total", collection="elections", result="applied") == 2
    assert requests.get(f"{svc.api}/elections/{eid}").status_code == 404
    assert requests.get(f"{svc.api}/elections").json()["page"]["totalElements"] == 0
    r = requests.post(f"{svc.api}/candidates", json=CANDIDATE)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "election"
    # a newer event does bring it back (a PUT re-creating the id continues the version)
    publish(rabbit, amqp_exchange, election_event("created", eid, 4))
    wait_until(lambda: replica_item(svc, eid), timeout=15)
    assert requests.post(f"{svc.api}/candidates", json=CANDIDATE).status_code == 201


def test_poison_messages_go_to_the_dead_letter_queue_at_once(service_factory, rabbit, amqp_exchange, queue):
    svc = start_candidate(service_factory, rabbit, queue)
    publish(rabbit, amqp_exchange, b"{not json at all", routing_key="election.created")
    unknown = election_event("exploded", new_id(), 1)
    publish(rabbit, amqp_exchange, unknown)
    incomplete = election_event("created", new_id(), 1)
    del incomplete["data"]["title"]
    publish(rabbit, amqp_exchange, incomplete)
    good = election_event("created", new_id(), 1)
    publish(rabbit, amqp_exchange, good)
    # the consumer keeps going: the good event behind the poison is applied
    wait_until(lambda: replica_item(svc, good["subject"]), timeout=15)
    wait_until(lambda: queue_depth(rabbit, queue(f"{QUEUE}.dlq")) == 3, timeout=15)
    assert metric(svc, "events_consumed_total", queue=QUEUE, result="dead") == 3
    assert metric(svc, "events_consumed_total", queue=QUEUE, result="retry") == 0
    assert metric(svc, "replica_events_total", collection="elections", result="invalid") == 2
    assert queue_depth(rabbit, queue(QUEUE)) == 0 and queue_depth(rabbit, queue(f"{QUEUE}.retry")) == 0

    def dead_letters(ch):
        out = []
        for _ in range(3):
            method, props, body = ch.basic_get(queue(f"{QUEUE}.dlq"), auto_ack=False)
            out.append((body, props.headers or {}))
        return out  # not acked: they stay parked when the channel closes
    parked = channel_call(rabbit, dead_letters)
    assert parked[0][0] == b"{not json at all"
    assert all(h.get("x-error") for _, h in parked)
    assert [h.get("x-routing-key") for _, h in parked] == ["election.created", "election.exploded",
                                                            "election.created"]
    assert queue_depth(rabbit, queue(f"{QUEUE}.dlq")) == 3


def test_database_outage_while_events_arrive(service_factory, rabbit, amqp_exchange, mongo, queue):
    svc = start_candidate(service_factory, rabbit, queue,
                          env={"REPLICA_RETRY_MS": "300", "REPLICA_MAX_ATTEMPTS": "100"})
    ids = [new_id() for _ in range(3)]
    mongo.kill()
    try:
        for i, eid in enumerate(ids):
            publish(rabbit, amqp_exchange, election_event("created", eid, 1, title=f"Outage {i}"))
        publish(rabbit, amqp_exchange, election_event("updated", ids[0], 2, title="Outage 0 v2"))
        publish(rabbit, amqp_exchange, election_event("deleted", ids[2], 2))
        wait_until(lambda: metric(svc, "events_consumed_total", queue=QUEUE, result="retry") > 0,
                   timeout=30, message="an event sent to the retry queue")
        assert requests.get(f"{svc.api}/ready", timeout=10).status_code == 503
        r = requests.post(f"{svc.api}/candidates", json=CANDIDATE, timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"]
    finally:
        mongo.start()

    def converged():
        a, b = replica_item(svc, ids[0]), replica_item(svc, ids[1])
        return (a and a["version"] == 2 and a["title"] == "Outage 0 v2" and b and b["version"] == 1
                and requests.get(f"{svc.api}/elections/{ids[2]}").status_code == 404)
    wait_until(converged, timeout=60, message="the replica converged after the outage")
    wait_until(lambda: queue_depth(rabbit, queue(QUEUE)) == 0
               and queue_depth(rabbit, queue(f"{QUEUE}.retry")) == 0, timeout=30)
    assert queue_depth(rabbit, queue(f"{QUEUE}.dlq")) == 0
    assert metric(svc, "events_consumed_total", queue=QUEUE, result="retry") > 0
    titles = sorted(e["title"] for e in requests.get(f"{svc.api}/elections").json()["_embedded"]["elections"])
    assert titles == ["Outage 0 v2", "Outage 1"]
    wait_until(lambda: requests.get(f"{svc.api}/ready").status_code == 200, timeout=15)


# ---- clearing and rebuilding the replica ----

def test_drop_elections_clears_and_rebuilds_through_the_election_replay(stack, rabbit, amqp_exchange):
    made = [requests.post(f"{stack.eapi}/elections", json=dict(ELECTION, title=f"E{i}")).json()
            for i in range(3)]
    requests.put(f"{stack.eapi}/elections/{made[0]['id']}", json=dict(ELECTION, title="E0", description="v2"))
    requests.delete(f"{stack.eapi}/elections/{made[2]['id']}")
    want = {(made[0]["id"], 2), (made[1]["id"], 1)}

    def replica():
        body = requests.get(f"{stack.api}/elections", params={"size": 100}).json()
        return {(e["id"], e["version"]) for e in body["_embedded"]["elections"]}
    wait_until(lambda: replica() == want, timeout=15)
    # an election the election service does not have: only a cleared replica loses it
    ghost = election_event("created", new_id(), 1, title="Ghost")
    publish(rabbit, amqp_exchange, ghost)
    wait_until(lambda: (ghost["subject"], 1) in replica(), timeout=15)

    r = admin("POST", f"{stack.api}/drop/elections")
    assert r.status_code == 204 and "Warning" not in r.headers
    wait_until(lambda: replica() == want, timeout=15, message="the replica rebuilt from the replay")
    assert (ghost["subject"], 1) not in replica()
    assert requests.post(f"{stack.api}/candidates", json=dict(CANDIDATE, election="E1")).status_code == 201
    assert requests.post(f"{stack.api}/candidates", json=dict(CANDIDATE, election="E2")).status_code == 422
