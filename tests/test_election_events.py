"""Election events through the outbox, against a real RabbitMQ: exactly one event per
change, nothing lost while the broker is down, and a crash between write and publish is
repaired by the relay after restart."""

from __future__ import annotations

import time

import pytest
import requests

from events import EventTap
from harness import admin_request as admin, wait_until

ELECTION = {"title": "2016 Presidential Election", "date": "2016-11-08",
            "electionType": "FEDERAL", "description": "58th"}


@pytest.fixture
def tap(rabbit, amqp_exchange, service_factory):
    # the service declares the exchange (with its alternate exchange); bind after it started
    svc = service_factory("election")
    t = EventTap(rabbit.url, amqp_exchange)
    t.svc = svc
    yield t
    t.close()


def test_one_event_per_change_with_type_id_and_version(tap):
    api = tap.svc.url + "/election/elections"
    item = requests.post(api, json=ELECTION).json()
    eid = item["id"]
    requests.put(f"{api}/{eid}", json=dict(ELECTION, description="v2"))
    requests.patch(f"{api}/{eid}", json={"electionType": "STATE"})
    requests.delete(f"{api}/{eid}")
    events = tap.wait_for(4)
    time.sleep(1.0)  # a duplicate would arrive within the relay's poll interval
    tap.drain()
    assert [(e["type"], e["subject"], e["version"]) for e in tap.events] == [
        ("election.created", eid, 1), ("election.updated", eid, 2),
        ("election.updated", eid, 3), ("election.deleted", eid, 4)]
    created = events[0]
    assert created["specversion"] == "1.0" and created["source"] == "/election"
    assert created["datacontenttype"] == "application/json" and created["time"].endswith("Z")
    assert created["data"]["title"] == ELECTION["title"] and created["data"]["version"] == 1
    assert events[2]["data"]["electionType"] == "STATE"
    assert events[3]["data"] == {"id": eid, "version": 4}
    assert all(e["_routing_key"] == e["type"] for e in events)
    assert all(e["_message_id"] == e["id"] for e in events)
    assert len({e["id"] for e in events}) == 4


def test_rejected_writes_emit_nothing(tap):
    api = tap.svc.url + "/election/elections"
    requests.post(api, json=ELECTION)
    requests.post(api, json=ELECTION)                     # 409 duplicate
    requests.post(api, json={"title": "x"})               # 422
    requests.delete(f"{api}/{'0' * 24}")                  # 404
    tap.wait_for(1)
    time.sleep(1.0)
    assert [e["type"] for e in tap.drain()] == ["election.created"]


def test_drop_emits_a_delete_per_election_and_replay_republishes(tap):
    base = tap.svc.url + "/election"
    ids = [requests.post(f"{base}/elections", json=dict(ELECTION, title=f"E{i}")).json()["id"]
           for i in range(3)]
    tap.wait_for(3)
    assert admin("POST", f"{base}/events/replay").status_code == 202
    events = tap.wait_for(6)
    replayed = [e for e in events[3:] if e["type"] == "election.updated"]
    assert sorted((e["subject"], e["version"]) for e in replayed) == sorted((i, 1) for i in ids)
    assert admin("POST", f"{base}/drop/elections").status_code == 204
    events = tap.wait_for(9)
    deleted = [e for e in events if e["type"] == "election.deleted"]
    assert sorted((e["subject"], e["version"]) for e in deleted) == sorted((i, 2) for i in ids)


def test_writes_succeed_while_broker_is_down_and_every_event_arrives_later(tap, rabbit):
    api = tap.svc.url + "/election/elections"
    requests.post(api, json=dict(ELECTION, title="before"))
    tap.wait_for(1)
    rabbit.stop_app()
    try:
        ids = []
        for i in range(20):
            r = requests.post(api, json=dict(ELECTION, title=f"during outage {i}"), timeout=10)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert requests.get(f"{tap.svc.url}/election/ready").status_code == 200
    finally:
        rabbit.start_app()
    events = tap.wait_for(21, timeout=60)
    got = [e["subject"] for e in events if e["type"] == "election.created"]
    assert set(ids) <= set(got)
    time.sleep(1.0)
    assert len(tap.drain()) == 21, "no event may be published twice in a clean recovery"


def test_crash_between_write_and_publish_publishes_after_restart(rabbit, amqp_exchange, service_factory):
    # OUTBOX_RELAY_PAUSED holds events in the outbox: the process dies with them unpublished
    first = service_factory("election", env={"OUTBOX_RELAY_PAUSED": "true"})
    tap = EventTap(rabbit.url, amqp_exchange)
    try:
        api = first.url + "/election/elections"
        ids = [requests.post(api, json=dict(ELECTION, title=f"T{i}")).json()["id"] for i in range(5)]
        time.sleep(0.5)
        assert tap.drain() == []
        first.kill()  # SIGKILL
        second = service_factory("election")  # same database (same test namespace)
        events = tap.wait_for(5)
        assert sorted(e["subject"] for e in events) == sorted(ids)
        assert all(e["type"] == "election.created" and e["version"] == 1 for e in events)
        # and the outbox is empty afterwards: nothing is re-published on the next poll
        time.sleep(1.5)
        assert len(tap.drain()) == 5
        wait_until(lambda: requests.get(f"{second.url}/election/ready").status_code == 200)
    finally:
        tap.close()


def test_event_nobody_listens_to_is_parked_not_dropped(rabbit, amqp_exchange, service_factory):
    import pika
    svc = service_factory("election")
    requests.post(svc.url + "/election/elections", json=ELECTION)
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        ch = conn.channel()

        def parked():
            return ch.queue_declare(f"{amqp_exchange}.unrouted", passive=True).method.message_count
        wait_until(lambda: parked() == 1, timeout=10)
    finally:
        conn.close()
