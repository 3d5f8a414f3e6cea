"""Candidate service over real HTTP, with real RabbitMQ and FerretDB: every endpoint, every
error status of docs/API.md, and the bad-input catalogue (each bad request gets the right
4xx problem+json and writes nothing). Elections become known the real way: created through
an election service started beside it, then consumed into the candidate service's replica."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import quote

import pika
import pytest
import requests

from harness import admin_request as admin, caller_headers, free_port, wait_until

ELECTION = {
    "title": "2016 Presidential Election",
    "date": "2016-11-08",
    "electionType": "FEDERAL",
    "description": "58th quadrennial American presidential election",
}
CANDIDATE = {
    "firstName": "Hillary",
    "lastName": "Clinton",
    "politicalParty": "Democratic Party",
    "election": ELECTION["title"],
    "homeState": "New York",
    "politcalExperience": "67th Secretary of State",
}
JSON = {"Content-Type": "application/json"}
QUEUE = "candidate.elections"  # the logical name; on the broker: queue(QUEUE)


# ---- fixtures and helpers ----

def wait_consuming(rabbit, name):
    """Until the service consumes its queue (declared and bound: events are not lost)."""
    def consuming():
        conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
        try:
            return conn.channel().queue_declare(name, passive=True).method.consumer_count >= 1
        finally:
            conn.close()
    wait_until(consuming, timeout=15, message=f"a consumer on {name}")


def start_candidate(service_factory, rabbit, queue, election=None, env=None):
    full_env = {"ELECTION_URL": election.url if election else f"http://127.0.0.1:{free_port()}"}
    full_env.update(env or {})
    svc = service_factory("candidate", env=full_env)
    wait_consuming(rabbit, queue(QUEUE))
    return svc


@pytest.fixture
def stack(service_factory, rabbit, queue):
    election = service_factory("election")
    candidate = start_candidate(service_factory, rabbit, queue, election)
    return SimpleNamespace(election=election, candidate=candidate,
                           api=candidate.url + "/candidate", eapi=election.url + "/election")


def add_election(stack, **overrides):
    """Creates an election through the election service and waits for the replica."""
    r = requests.post(f"{stack.eapi}/elections", json=dict(ELECTION, **overrides))
    assert r.status_code == 201, r.text
    item = r.json()
    wait_until(lambda: requests.get(f"{stack.api}/elections/{item['id']}").status_code == 200,
               timeout=15, message=f"election {item['title']!r} in the candidate replica")
    return item


@pytest.fixture
def api(stack):
    add_election(stack)
    return stack.api


def create(api, **overrides):
    r = requests.post(f"{api}/candidates", json=dict(CANDIDATE, **overrides))
    assert r.status_code == 201, r.text
    return r.json()


def count(api):
    return requests.get(f"{api}/candidates").json()["page"]["totalElements"]


def assert_problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"]
    if field is not None:
        assert any(e["field"] == field for e in body["errors"]), body
    return body


# ---- CRUD ----

def test_create_returns_201_location_etag_and_hal_item(api):
    r = requests.post(f"{api}/candidates", json=CANDIDATE)
    assert r.status_code == 201, r.text
    item = r.json()
    for key, value in CANDIDATE.items():
        assert item[key] == value
    assert item["fullName"] == "Hillary Clinton" and item["version"] == 1
    assert len(item["id"]) == 24
    assert r.headers["Location"].endswith(f"/candidate/candidates/{item['id']}")
    assert r.headers["ETag"] == '"1"'
    assert item["_links"]["self"]["href"] == r.headers["Location"]
    assert item["_links"]["candidate"]["href"] == r.headers["Location"]
    assert r.headers["Content-Type"].startswith("application/hal+json")


def test_optional_fields_may_be_absent_and_render_null(api):
    item = create(api, politicalParty=None, homeState=None, politcalExperience=None)
    assert item["politicalParty"] is None and item["homeState"] is None
    assert item["politcalExperience"] is None


def test_get_by_id_and_unknown_id_is_404(api):
    item = create(api)
    r = requests.get(f"{api}/candidates/{item['id']}")
    assert r.status_code == 200 and r.json()["fullName"] == "Hillary Clinton"
    assert r.headers["ETag"] == '"1"'
    assert_problem(requests.get(f"{api}/candidates/{'0' * 24}"), 404)
    assert_problem(requests.get(f"{api}/candidates/not-an-id"), 404)


def test_get_with_matching_if_none_match_is_304(api):
    item = create(api)
    r = requests.get(f"{api}/candidates/{item['id']}", headers={"If-None-Match": '"1"'})
    assert r.status_code == 304 and r.headers["ETag"] == '"1"'
    r = requests.get(f"{api}/candidates/{item['id']}", headers={"If-None-Match": '"9"'})
    assert r.status_code == 200


def test_put_replaces_and_bumps_version(api):
    item = create(api)
    body = dict(CANDIDATE, firstName="Hillary Rodham")
    del body["homeState"]
    r = requests.put(f"{api}/candidates/{item['id']}", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["fullName"] == "Hillary Rodham Clinton" and got["homeState"] is None
    assert got["version"] == 2 and r.headers["ETag"] == '"2"'
    assert requests.get(f"{api}/candidates/{item['id']}").json() == got


def test_get_representation_can_be_put_back(api):
    item = create(api)
    body = {k: v for k, v in item.items() if k != "_links"}
    r = requests.put(f"{api}/candidates/{item['id']}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2


def test_put_to_new_id_creates_201(api):
    new_id = "65a1b2c3d4e5f60718293a4b"
    r = requests.put(f"{api}/candidates/{new_id}", json=CANDIDATE)
    assert r.status_code == 201 and r.json()["id"] == new_id and r.json()["version"] == 1
    assert r.headers["Location"].endswith(f"/candidate/candidates/{new_id}")
    assert requests.get(f"{api}/candidates/{new_id}").status_code == 200


def test_put_with_malformed_id_is_400(api):
    assert_problem(requests.put(f"{api}/candidates/xyz", json=CANDIDATE), 400)
    assert count(api) == 0


def test_patch_merges_rederives_full_name_and_null_removes_optional(api):
    item = create(api)
    r = requests.patch(f"{api}/candidates/{item['id']}",
                       json={"homeState": None, "firstName": "Bill"},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["homeState"] is None and got["fullName"] == "Bill Clinton"
    assert got["politcalExperience"] == CANDIDATE["politcalExperience"] and got["version"] == 2


def test_patch_cannot_remove_required_field(api):
    item = create(api)
    assert_problem(requests.patch(f"{api}/candidates/{item['id']}", json={"lastName": None}),
                   422, "lastName")
    assert_problem(requests.patch(f"{api}/candidates/{item['id']}", json={"nickname": "x"}),
                   422, "nickname")
    assert requests.get(f"{api}/candidates/{item['id']}").json()["version"] == 1


def test_patch_unknown_id_is_404(api):
    assert_problem(requests.patch(f"{api}/candidates/{'1' * 24}", json={"homeState": "x"}), 404)
    assert_problem(requests.patch(f"{api}/candidates/nope", json={"homeState": "x"}), 404)


def test_delete_204_then_404_and_name_reusable(api):
    item = create(api)
    assert requests.delete(f"{api}/candidates/{item['id']}").status_code == 204
    assert_problem(requests.get(f"{api}/candidates/{item['id']}"), 404)
    assert_problem(requests.delete(f"{api}/candidates/{item['id']}"), 404)
    assert_problem(requests.delete(f"{api}/candidates/not-an-id"), 404)
    create(api)  # the deleted candidate's full name is free again in that election
    assert count(api) == 1


def test_put_recreating_a_deleted_id_continues_its_version(api):
    item = create(api)
    requests.delete(f"{api}/candidates/{item['id']}")
    r = requests.put(f"{api}/candidates/{item['id']}", json=CANDIDATE)
    assert r.status_code == 201 and r.json()["version"] == 3


def test_if_match_mismatch_is_412_and_match_succeeds(api):
    item = create(api)
    url = f"{api}/candidates/{item['id']}"
    body = dict(CANDIDATE, homeState="Illinois")
    assert_problem(requests.put(url, json=body, headers={"If-Match": '"7"'}), 412)
    assert_problem(requests.patch(url, json={"homeState": "x"}, headers={"If-Match": '"7"'}), 412)
    assert_problem(requests.delete(url, headers={"If-Match": '"7"'}), 412)
    assert_problem(requests.delete(url, headers={"If-Match": "garbage"}), 412)
    assert requests.get(url).json()["version"] == 1
    r = requests.put(url, json=body, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = requests.patch(url, json={"homeState": "Arkansas"}, headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["version"] == 3
    assert requests.delete(url, headers={"If-Match": 'W/"3"'}).status_code == 204


def test_same_full_name_in_one_election_is_409_but_fine_in_another(stack, api):
    add_election(stack, title="2020 Presidential Election", date="2020-11-03")
    first = create(api)
    assert_problem(requests.post(f"{api}/candidates", json=dict(CANDIDATE, homeState="Illinois")), 409)
    other = create(api, election="2020 Presidential Election")
    # a PUT or PATCH onto a taken (name, election) pair is a conflict too
    assert_problem(requests.put(f"{api}/candidates/{other['id']}", json=CANDIDATE), 409)
    assert_problem(requests.patch(f"{api}/candidates/{other['id']}",
                                  json={"election": ELECTION["title"]}), 409)
    assert_problem(requests.put(f"{api}/candidates/{'2' * 24}", json=CANDIDATE), 409)
    assert count(api) == 2
    assert requests.get(f"{api}/candidates/{first['id']}").json()["version"] == 1


def test_unknown_election_is_422_and_nothing_written(api):
    body = assert_problem(requests.post(f"{api}/candidates", json=dict(CANDIDATE, election="Nope")),
                          422, "election")
    assert [e["field"] for e in body["errors"]] == ["election"]
    assert_problem(requests.put(f"{api}/candidates/{'3' * 24}", json=dict(CANDIDATE, election="Nope")),
                   422, "election")
    item = create(api)
    assert_problem(requests.patch(f"{api}/candidates/{item['id']}", json={"election": "Nope"}),
                   422, "election")
    # titles match exactly
    assert_problem(requests.post(f"{api}/candidates",
                                 json=dict(CANDIDATE, election=ELECTION["title"].lower())), 422, "election")
    assert count(api) == 1
    assert requests.get(f"{api}/candidates/{item['id']}").json()["version"] == 1


def test_political_experience_alias_is_accepted_and_rendered_misspelt(api):
    body = {k: v for k, v in CANDIDATE.items() if k != "politcalExperience"}
    body["politicalExperience"] = "Senator from New York"
    r = requests.post(f"{api}/candidates", json=body)
    assert r.status_code == 201, r.text
    item = r.json()
    assert item["politcalExperience"] == "Senator from New York" and "politicalExperience" not in item
    r = requests.patch(f"{api}/candidates/{item['id']}", json={"politicalExperience": "Governor"})
    assert r.status_code == 200 and r.json()["politcalExperience"] == "Governor"
    r = requests.put(f"{api}/candidates/{item['id']}", json=dict(body, politicalExperience="Mayor"))
    assert r.status_code == 200 and r.json()["politcalExperience"] == "Mayor"


def test_both_experience_spellings_at_once_is_422(api):
    body = dict(CANDIDATE, politicalExperience="other")
    assert_problem(requests.post(f"{api}/candidates", json=body), 422, "politicalExperience")
    item = create(api)
    assert_problem(requests.patch(f"{api}/candidates/{item['id']}",
                                  json={"politcalExperience": "a", "politicalExperience": "b"}),
                   422, "politicalExperience")
    assert count(api) == 1


def test_full_name_is_derived_and_only_accepted_when_it_agrees(api):
    assert_problem(requests.post(f"{api}/candidates", json=dict(CANDIDATE, fullName="Someone Else")),
                   422, "fullName")
    item = create(api, fullName="Hillary Clinton")
    assert item["fullName"] == "Hillary Clinton"
    assert_problem(requests.patch(f"{api}/candidates/{item['id']}", json={"fullName": "H. Clinton"}),
                   422, "fullName")


# ---- collections, paging, sort, projection, search ----

PEOPLE = [("Gary", "Johnson", "Libertarian Party"), ("Jill", "Stein", "Green Party"),
          ("Donald", "Trump", "Republican Party"), ("Darrell", "Castle", "Constitution Party"),
          ("Hillary", "Clinton", "Democratic Party")]


def seed(api, election=ELECTION["title"]):
    return [create(api, firstName=f, lastName=l, politicalParty=p, election=election)
            for f, l, p in PEOPLE]


def test_list_is_hal_with_paging(api):
    seed(api)
    r = requests.get(f"{api}/candidates", params={"page": 1, "size": 2, "sort": "lastName"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/hal+json")
    body = r.json()
    assert body["page"] == {"size": 2, "totalElements": 5, "totalPages": 3, "number": 1}
    assert [c["lastName"] for c in body["_embedded"]["candidates"]] == ["Johnson", "Stein"]
    links = body["_links"]
    assert {"self", "first", "prev", "next", "last", "profile", "search"} <= set(links)
    assert links["next"]["href"].endswith("/candidate/candidates?page=2&size=2")
    assert links["profile"]["href"].endswith("/candidate/profile/candidates")
    item = body["_embedded"]["candidates"][0]
    assert item["_links"]["self"]["href"].endswith(f"/candidate/candidates/{item['id']}")


def test_sort_by_full_name_desc_and_multiple(api):
    seed(api)
    body = requests.get(f"{api}/candidates", params={"sort": "fullName,desc"}).json()
    names = [c["fullName"] for c in body["_embedded"]["candidates"]]
    assert names == sorted(names, reverse=True)
    body = requests.get(f"{api}/candidates",
                        params=[("sort", "politicalParty,desc"), ("sort", "id")]).json()
    parties = [c["politicalParty"] for c in body["_embedded"]["candidates"]]
    assert parties == sorted(parties, reverse=True)
    for prop in ("firstName", "election", "homeState", "politcalExperience", "version", "id"):
        assert requests.get(f"{api}/candidates", params={"sort": prop}).status_code == 200


def test_empty_collection(api):
    body = requests.get(f"{api}/candidates").json()
    assert body["_embedded"]["candidates"] == []
    assert body["page"] == {"size": 20, "totalElements": 0, "totalPages": 0, "number": 0}


def test_size_is_capped(api):
    assert requests.get(f"{api}/candidates", params={"size": 100000}).json()["page"]["size"] == 1000


def test_links_follow_forwarded_host(api):
    item = create(api)
    r = requests.get(f"{api}/candidates/{item['id']}",
                     headers={"X-Forwarded-Host": "voter.example", "X-Forwarded-Proto": "https"})
    assert r.json()["_links"]["self"]["href"] == f"https://voter.example/candidate/candidates/{item['id']}"


def test_candidate_voter_view_projection(api):
    seed(api)
    r = requests.get(f"{api}/candidates", params={"projection": "candidateVoterView", "sort": "lastName"})
    assert r.status_code == 200
    items = r.json()["_embedded"]["candidates"]
    assert [set(i) for i in items] == [{"fullName", "politicalParty", "election", "_links"}] * 5
    assert items[0] == {"fullName": "Darrell Castle", "politicalParty": "Constitution Party",
                        "election": ELECTION["title"], "_links": items[0]["_links"]}
    assert "/candidate/candidates/" in items[0]["_links"]["self"]["href"]
    one = requests.get(items[0]["_links"]["self"]["href"],
                       params={"projection": "candidateVoterView"}).json()
    assert set(one) == {"fullName", "politicalParty", "election", "_links"}


def test_unknown_projection_is_400(api):
    item = create(api)
    assert_problem(requests.get(f"{api}/candidates", params={"projection": "everything"}), 400)
    assert_problem(requests.get(f"{api}/candidates/{item['id']}", params={"projection": "x"}), 400)


def test_search_find_by_election_contains(stack, api):
    add_election(stack, title="2017 N.Y. (City) Mayoral Election", date="2017-11-07")
    seed(api)
    create(api, firstName="Bill", lastName="de Blasio", election="2017 N.Y. (City) Mayoral Election")
    url = f"{api}/candidates/search/findByElectionContains"
    body = requests.get(url, params={"election": "Presidential"}).json()
    assert body["page"]["totalElements"] == 5
    assert body["_links"]["self"]["href"].split("{")[0].endswith("/search/findByElectionContains")
    # regex metacharacters match literally
    body = requests.get(url, params={"election": "N.Y. (City)"}).json()
    assert [c["fullName"] for c in body["_embedded"]["candidates"]] == ["Bill de Blasio"]
    assert requests.get(url, params={"election": ".*"}).json()["page"]["totalElements"] == 0
    assert requests.get(url, params={"election": '{"$ne": null}'}).json()["page"]["totalElements"] == 0
    # with the projection and paging
    body = requests.get(url, params={"election": "Election", "projection": "candidateVoterView",
                                     "size": 2, "sort": "lastName,desc"}).json()
    assert body["page"]["totalElements"] == 6
    # binary order, like the original's MongoDB: lower-case "de Blasio" sorts last
    assert [c["fullName"] for c in body["_embedded"]["candidates"]] == ["Bill de Blasio", "Donald Trump"]
    assert set(body["_embedded"]["candidates"][0]) == {"fullName", "politicalParty", "election", "_links"}
    assert_problem(requests.get(url), 400)
    assert_problem(requests.get(url, params={"election": "x", "page": "-1"}), 400)
    links = requests.get(f"{api}/candidates/search").json()["_links"]
    assert "findByElectionContains" in links and links["findByElectionContains"]["templated"] is True


def test_summary_is_sorted_by_last_name(stack, api):
    add_election(stack, title="2012 Presidential Election", date="2012-11-06")
    seed(api)
    create(api, firstName="Mitt", lastName="Romney", politicalParty="Republican Party",
           election="2012 Presidential Election")
    r = requests.get(f"{api}/candidates/summary")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    summary = r.json()["candidates"]
    assert [c["fullName"] for c in summary] == [
        "Darrell Castle", "Hillary Clinton", "Gary Johnson", "Mitt Romney", "Jill Stein", "Donald Trump"]
    assert summary[0] == {"fullName": "Darrell Castle", "politicalParty": "Constitution Party",
                          "election": ELECTION["title"]}


def test_summary_by_election_with_spaces_commas_and_dots(stack, api):
    title = "St. Louis, Mo. Mayoral Election, 2017."
    add_election(stack, title=title, date="2017-04-04")
    add_election(stack, title="St. Louis, Mo. Mayoral Election, 2017", date="2017-04-05")
    add_election(stack, title="a/b", date="2017-04-06")
    seed(api)
    create(api, firstName="Lyda", lastName="Krewson", politicalParty="Democratic Party", election=title)
    create(api, firstName="Andrew", lastName="Jones", politicalParty="Republican Party", election=title)
    create(api, firstName="No", lastName="Dot", election="St. Louis, Mo. Mayoral Election, 2017")
    create(api, firstName="Slash", lastName="Person", election="a/b")
    r = requests.get(f"{api}/candidates/summary/{quote(title, safe='')}")
    assert r.status_code == 200
    assert r.json() == {"candidates": [
        {"fullName": "Andrew Jones", "politicalParty": "Republican Party", "election": title},
        {"fullName": "Lyda Krewson", "politicalParty": "Democratic Party", "election": title}]}
    # the same title written with literal dots, spaces as %20 and commas unescaped
    r = requests.get(f"{api}/candidates/summary/" + title.replace(" ", "%20"))
    assert len(r.json()["candidates"]) == 2
    r = requests.get(f"{api}/candidates/summary/{quote('a/b', safe='')}")
    assert [c["fullName"] for c in r.json()["candidates"]] == ["Slash Person"]
    summary = requests.get(f"{api}/candidates/summary/{quote(ELECTION['title'])}").json()["candidates"]
    assert [c["fullName"] for c in summary] == ["Darrell Castle", "Hillary Clinton", "Gary Johnson",
                                                "Jill Stein", "Donald Trump"]


def test_summary_of_unknown_election_is_empty(api):
    seed(api)
    assert requests.get(f"{api}/candidates/summary/Nothing%20Here").json() == {"candidates": []}


def test_summary_hides_deleted_candidates(api):
    items = seed(api)
    requests.delete(f"{api}/candidates/{items[0]['id']}")
    names = [c["fullName"] for c in requests.get(f"{api}/candidates/summary").json()["candidates"]]
    assert "Gary Johnson" not in names and len(names) == 4


# ---- the election replica (read-only) ----

def test_election_replica_renders_like_the_election_service(stack):
    source = add_election(stack)
    r = requests.get(f"{stack.api}/elections/{source['id']}")
    assert r.status_code == 200 and r.headers["ETag"] == '"1"'
    got = r.json()
    assert {k: v for k, v in got.items() if k != "_links"} == {k: v for k, v in source.items() if k != "_links"}
    assert got["date"] == "2016-11-08T00:00:00.000+0000"
    assert got["_links"]["self"]["href"].endswith(f"/candidate/elections/{source['id']}")
    assert got["_links"]["election"]["href"] == got["_links"]["self"]["href"]
    assert_problem(requests.get(f"{stack.api}/elections/{'0' * 24}"), 404)
    assert_problem(requests.get(f"{stack.api}/elections/whatever"), 404)


def test_election_replica_list_paging_and_search(stack):
    for i, kind in enumerate(["FEDERAL", "STATE", "LOCAL", "FED.*"]):
        add_election(stack, title=f"Election {i}", date=f"201{i}-11-0{i + 1}", electionType=kind)
    body = requests.get(f"{stack.api}/elections", params={"size": 3, "sort": "date,desc"}).json()
    assert body["page"] == {"size": 3, "totalElements": 4, "totalPages": 2, "number": 0}
    assert [e["title"] for e in body["_embedded"]["elections"]] == ["Election 3", "Election 2", "Election 1"]
    assert {"self", "next", "search", "profile"} <= set(body["_links"])
    url = f"{stack.api}/elections/search/findByElectionTypeContaining"
    body = requests.get(url, params={"electionType": "FED", "sort": "title"}).json()
    assert [e["electionType"] for e in body["_embedded"]["elections"]] == ["FEDERAL", "FED.*"]
    body = requests.get(url, params={"electionType": ".*"}).json()
    assert [e["title"] for e in body["_embedded"]["elections"]] == ["Election 3"]
    assert_problem(requests.get(url), 400)
    assert_problem(requests.get(f"{stack.api}/elections", params={"sort": "winner"}), 400)
    assert "findByElectionTypeContaining" in requests.get(f"{stack.api}/elections/search").json()["_links"]


def test_election_replica_is_read_only(stack):
    source = add_election(stack)
    r = requests.post(f"{stack.api}/elections", json=ELECTION)
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" not in r.headers["Allow"]
    for method in ("PUT", "PATCH", "DELETE"):
        assert_problem(requests.request(method, f"{stack.api}/elections/{source['id']}", json=ELECTION), 405)
    assert requests.get(f"{stack.api}/elections").json()["page"]["totalElements"] == 1


# ---- drops and replay ----

def test_drop_candidates_deletes_everything(api):
    seed(api)
    assert admin("POST", f"{api}/drop/candidates").status_code == 204
    assert count(api) == 0
    assert requests.get(f"{api}/candidates/summary").json() == {"candidates": []}
    assert admin("POST", f"{api}/drop/candidates").status_code == 204


def test_replay_is_202(api):
    seed(api)
    r = admin("POST", f"{api}/events/replay")
    assert r.status_code == 202 and r.json() == {"republished": 5}


def test_drop_elections_clears_the_replica_and_it_rebuilds(stack):
    source = add_election(stack)
    r = admin("POST", f"{stack.api}/drop/elections")
    assert r.status_code == 204 and "Warning" not in r.headers
    wait_until(lambda: requests.get(f"{stack.api}/elections/{source['id']}").status_code == 200,
               timeout=15, message="the replica rebuilt by the election service's replay")


def test_drop_elections_answers_204_with_warning_when_election_service_is_down(service_factory, rabbit,
                                                                               queue):
    svc = start_candidate(service_factory, rabbit, queue)  # ELECTION_URL: nobody listens there
    api = svc.url + "/candidate"
    r = admin("POST", f"{api}/drop/elections")
    assert r.status_code == 204
    assert "could not be asked to replay" in r.headers["Warning"]
    assert requests.get(f"{api}/elections").json()["page"]["totalElements"] == 0
    lines = [json.loads(l) for l in svc.log_lines() if l.startswith("{")]
    assert any(l.get("msg") == "election replay request failed" for l in lines)


def test_drop_and_replay_need_post(api):
    for path in ("drop/candidates", "drop/elections", "events/replay"):
        r = requests.get(f"{api}/{path}")
        assert_problem(r, 405)
        assert "POST" in r.headers["Allow"]


# ---- operations, protocol ----

def test_health_ready_info_metrics(stack):
    api = stack.api
    assert requests.get(f"{api}/health").json() == {"status": "UP"}
    assert requests.get(f"{api}/actuator/health").json() == {"status": "UP"}
    ready = requests.get(f"{api}/ready")
    assert ready.status_code == 200 and ready.json()["components"]["mongodb"] == "UP"
    info = requests.get(f"{api}/info").json()
    assert info["name"] == "candidate" and info["mongodb"]["status"] == "UP"
    assert {"version", "gitCommit", "hostname", "uptimeSeconds", "rabbitmq"} <= set(info)
    add_election(stack)
    requests.get(f"{api}/candidates")
    text = requests.get(f"{api}/metrics").text
    assert 'http_requests_total{route="/candidate/candidates",method="GET",status="200"}' in text
    # both are counted just after the election became visible (applied, then acked)
    for series in ('replica_events_total{collection="elections",result="applied"} 1',
                   f'events_consumed_total{{queue="{QUEUE}",result="ack"}} 1'):
        wait_until(lambda: series in requests.get(f"{api}/metrics").text, timeout=10, message=series)


def test_help_describes_the_configuration():
    import subprocess
    from harness import binary
    out = subprocess.run([binary("candidate"), "--help"], capture_output=True, text=True, check=True).stdout
    for var in ("HTTP_PORT", "MONGODB_URI", "AMQP_URL", "AMQP_QUEUE_PREFIX", "ELECTION_URL",
                "REPLICA_QUEUE", "REPLICA_RETRY_MS", "REPLICA_MAX_ATTEMPTS", "8082"):
        assert var in out


def test_unknown_path_404_and_wrong_method_405_with_allow(stack):
    assert_problem(requests.get(f"{stack.candidate.url}/candidateX/candidates"), 404)
    assert_problem(requests.get(f"{stack.api}/nothing"), 404)
    r = requests.delete(f"{stack.api}/candidates")
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


def test_cors_preflight_and_origin(stack):
    r = requests.options(f"{stack.api}/candidates", headers={
        "Origin": "http://dashboard.local", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://dashboard.local"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]


# ---- bad-input catalogue: right 4xx, nothing written ----

BAD_BODIES = [
    ("malformed JSON", b'{"firstName": "x", ', 400, None),
    ("empty body", b"", 400, None),
    ("array body", b"[1,2]", 422, ""),
    ("missing firstName", json.dumps({k: v for k, v in CANDIDATE.items() if k != "firstName"}), 422, "firstName"),
    ("missing lastName", json.dumps({k: v for k, v in CANDIDATE.items() if k != "lastName"}), 422, "lastName"),
    ("missing election", json.dumps({k: v for k, v in CANDIDATE.items() if k != "election"}), 422, "election"),
    ("empty lastName", json.dumps(dict(CANDIDATE, lastName="")), 422, "lastName"),
    ("firstName wrong type", json.dumps(dict(CANDIDATE, firstName=42)), 422, "firstName"),
    ("election wrong type", json.dumps(dict(CANDIDATE, election={"title": "x"})), 422, "election"),
    ("party wrong type", json.dumps(dict(CANDIDATE, politicalParty=["D"])), 422, "politicalParty"),
    ("homeState wrong type", json.dumps(dict(CANDIDATE, homeState=True)), 422, "homeState"),
    ("experience wrong type", json.dumps(dict(CANDIDATE, politcalExperience=1.5)), 422, "politcalExperience"),
    ("version wrong type", json.dumps(dict(CANDIDATE, version="1")), 422, "version"),
    ("unknown field", json.dumps(dict(CANDIDATE, votes=3)), 422, "votes"),
    ("links are not input", json.dumps(dict(CANDIDATE, _links={})), 422, "_links"),
    ("dollar key", json.dumps(dict(CANDIDATE, **{"$where": "1"})), 422, "$where"),
    ("nested dollar key", json.dumps(dict(CANDIDATE, homeState={"$gt": ""})), 422, "homeState.$gt"),
    ("dotted key", json.dumps(dict(CANDIDATE, **{"a.b": 1})), 422, "a.b"),
    ("duplicate key", json.dumps(CANDIDATE)[:-1] + ', "lastName": "Trump"}', 400, None),
    ("huge lastName", json.dumps(dict(CANDIDATE, lastName="x" * 10000)), 422, "lastName"),
    ("NUL in lastName", json.dumps(dict(CANDIDATE, lastName="a\u0000b")), 400, None),
    ("unknown election", json.dumps(dict(CANDIDATE, election="Nope")), 422, "election"),
]


@pytest.mark.parametrize("name,body,status,field", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_post_body_is_rejected_and_nothing_written(api, name, body, status, field):
    r = requests.post(f"{api}/candidates", data=body, headers=JSON)
    assert_problem(r, status, field)
    assert count(api) == 0


@pytest.mark.parametrize("name,body,status,field", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_put_body_changes_nothing(api, name, body, status, field):
    item = create(api)
    r = requests.put(f"{api}/candidates/{item['id']}", data=body, headers=JSON)
    assert_problem(r, status, field)
    assert requests.get(f"{api}/candidates/{item['id']}").json()["version"] == 1


def test_bad_patch_bodies_change_nothing(api):
    item = create(api)
    url = f"{api}/candidates/{item['id']}"
    assert_problem(requests.patch(url, data=b"{", headers=JSON), 400)
    assert_problem(requests.patch(url, data=b"[]", headers=JSON), 422)
    assert_problem(requests.patch(url, json={"$set": {"lastName": "x"}}), 422, "$set")
    assert_problem(requests.patch(url, json={"firstName": 7}), 422, "firstName")
    assert_problem(requests.patch(url, data=b'{"homeState":"x"}', headers={"Content-Type": "text/plain"}), 415)
    assert requests.get(url).json()["version"] == 1


def test_wrong_content_type_is_415(api):
    r = requests.post(f"{api}/candidates", data=json.dumps(CANDIDATE), headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)
    assert_problem(requests.post(f"{api}/candidates", data=json.dumps(CANDIDATE)), 415)
    r = requests.post(f"{api}/candidates", data={"firstName": "x"})  # a form
    assert_problem(r, 415)
    assert count(api) == 0


def test_two_megabyte_body_is_413(api):
    body = json.dumps(dict(CANDIDATE, politcalExperience="x" * (2 * 1024 * 1024)))
    try:
        r = requests.post(f"{api}/candidates", data=body, headers=JSON)
        assert_problem(r, 413)
    except requests.exceptions.ConnectionError:
        pytest.fail("the server must answer 413, not just drop the connection")
    assert count(api) == 0


def test_chunked_body_over_limit_is_413(api):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536
    assert_problem(requests.post(f"{api}/candidates", data=chunks(), headers=JSON), 413)
    assert count(api) == 0


def test_id_in_body_must_match_the_path(api):
    item = create(api)
    assert_problem(requests.put(f"{api}/candidates/{item['id']}", json=dict(CANDIDATE, id="0" * 24)), 422, "id")
    assert_problem(requests.patch(f"{api}/candidates/{item['id']}", json={"id": "0" * 24}), 422, "id")
    assert requests.get(f"{api}/candidates/{item['id']}").json()["version"] == 1


BAD_QUERIES = [
    {"page": "-1"}, {"page": "abc"}, {"size": "0"}, {"size": "-5"}, {"size": "1e3"},
    {"sort": "nosuchfield"}, {"sort": "lastName,sideways"}, {"sort": ""}, {"sort": "$where"},
    {"sort": "_id"}, {"sort": "nameKey"}, {"page": "99999999999999999999"},
]


@pytest.mark.parametrize("params", BAD_QUERIES, ids=[str(q) for q in BAD_QUERIES])
def test_bad_paging_parameters_are_400(stack, params):
    for path in ("candidates", "elections", "candidates/search/findByElectionContains",
                 "elections/search/findByElectionTypeContaining"):
        query = dict(params, election="x", electionType="x")
        assert_problem(requests.get(f"{stack.api}/{path}", params=query), 400)


# ---- Idempotency-Key ----

def test_a_keyed_create_retried_is_one_candidate(api):
    key = {"Idempotency-Key": "c-1"}
    first = requests.post(f"{api}/candidates", json=CANDIDATE, headers=key)
    again = requests.post(f"{api}/candidates", json=CANDIDATE, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert count(api) == 1
    assert_problem(requests.post(f"{api}/candidates", json=dict(CANDIDATE, lastName="Rodham"),
                                 headers=key), 422)
    mine = requests.post(f"{api}/candidates", json=dict(CANDIDATE, lastName="Rodham"),
                         headers={**key, **caller_headers("POST", f"{api}/candidates", "e" * 64)})
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]
    assert count(api) == 2
