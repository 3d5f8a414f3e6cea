"""Election service over real HTTP, with real RabbitMQ and FerretDB: every endpoint,
every error status of docs/API.md, and the bad-input catalogue (each bad request gets the
right 4xx problem+json and writes nothing)."""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import pytest
import requests

from harness import admin_request as admin, caller_headers

ELECTION = {
    "title": "2016 Presidential Election",
    "date": "2016-11-08",
    "electionType": "FEDERAL",
    "description": "58th quadrennial American presidential election",
}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def svc(service_factory):
    return service_factory("election")


@pytest.fixture
def api(svc):
    return svc.url + "/election"


def create(api, **overrides):
    body = dict(ELECTION, **overrides)
    r = requests.post(f"{api}/elections", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def count(api):
    return requests.get(f"{api}/elections").json()["page"]["totalElements"]


def assert_problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"]
    if field is not None:
        assert any(e["field"] == field for e in body["errors"]), body


# ---- CRUD ----

def test_create_returns_201_location_etag_and_hal_item(api):
    r = requests.post(f"{api}/elections", json=ELECTION)
    assert r.status_code == 201
    item = r.json()
    assert item["title"] == ELECTION["title"]
    assert item["date"] == "2016-11-08T00:00:00.000+0000"
    assert item["electionType"] == "FEDERAL" and item["version"] == 1
    assert len(item["id"]) == 24
    assert r.headers["Location"].endswith(f"/election/elections/{item['id']}")
    assert r.headers["ETag"] == '"1"'
    assert item["_links"]["self"]["href"] == r.headers["Location"]
    assert item["_links"]["election"]["href"] == r.headers["Location"]
    assert r.headers["Content-Type"].startswith("application/hal+json")


def test_get_by_id_and_unknown_id_is_404(api):
    item = create(api)
    r = requests.get(f"{api}/elections/{item['id']}")
    assert r.status_code == 200 and r.json()["title"] == ELECTION["title"]
    assert_problem(requests.get(f"{api}/elections/{'0' * 24}"), 404)
    assert_problem(requests.get(f"{api}/elections/not-an-id"), 404)


def test_get_with_matching_if_none_match_is_304(api):
    item = create(api)
    r = requests.get(f"{api}/elections/{item['id']}", headers={"If-None-Match": '"1"'})
    assert r.status_code == 304 and r.headers["ETag"] == '"1"'


def test_put_replaces_and_bumps_version(api):
    item = create(api)
    body = dict(ELECTION, description="changed")
    del body["electionType"]
    r = requests.put(f"{api}/elections/{item['id']}", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["description"] == "changed" and got["electionType"] is None and got["version"] == 2
    assert r.headers["ETag"] == '"2"'


def test_put_to_new_id_creates_201(api):
    new_id = "65a1b2c3d4e5f60718293a4b"
    r = requests.put(f"{api}/elections/{new_id}", json=ELECTION)
    assert r.status_code == 201 and r.json()["id"] == new_id
    assert requests.get(f"{api}/elections/{new_id}").status_code == 200


def test_put_with_malformed_id_is_400(api):
    assert_problem(requests.put(f"{api}/elections/xyz", json=ELECTION), 400)
    assert count(api) == 0


def test_patch_merges_and_null_removes_optional(api):
    item = create(api)
    r = requests.patch(f"{api}/elections/{item['id']}", json={"description": None, "electionType": "state"},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["description"] is None and got["electionType"] == "state"
    assert got["title"] == ELECTION["title"] and got["version"] == 2


def test_patch_cannot_remove_required_field(api):
    item = create(api)
    r = requests.patch(f"{api}/elections/{item['id']}", json={"title": None})
    assert_problem(r, 422, "title")
    assert requests.get(f"{api}/elections/{item['id']}").json()["version"] == 1


def test_patch_unknown_id_is_404(api):
    assert_problem(requests.patch(f"{api}/elections/{'1' * 24}", json={"description": "x"}), 404)


def test_delete_204_then_404_and_title_reusable(api):
    item = create(api)
    assert requests.delete(f"{api}/elections/{item['id']}").status_code == 204
    assert_problem(requests.get(f"{api}/elections/{item['id']}"), 404)
    assert_problem(requests.delete(f"{api}/elections/{item['id']}"), 404)
    create(api)  # the deleted election's title is free again
    assert count(api) == 1


def test_put_recreating_a_deleted_id_continues_its_version(api):
    item = create(api)
    requests.delete(f"{api}/elections/{item['id']}")
    r = requests.put(f"{api}/elections/{item['id']}", json=ELECTION)
    assert r.status_code == 201 and r.json()["version"] == 3


def test_duplicate_title_is_409_and_not_written(api):
    create(api)
    r = requests.post(f"{api}/elections", json=dict(ELECTION, date="2020-11-03"))
    assert_problem(r, 409)
    assert count(api) == 1


def test_if_match_mismatch_is_412_and_match_succeeds(api):
    item = create(api)
    url = f"{api}/elections/{item['id']}"
    body = dict(ELECTION, description="v2")
    assert_problem(requests.put(url, json=body, headers={"If-Match": '"7"'}), 412)
    assert_problem(requests.patch(url, json={"description": "x"}, headers={"If-Match": '"7"'}), 412)
    assert_problem(requests.delete(url, headers={"If-Match": '"7"'}), 412)
    assert_problem(requests.delete(url, headers={"If-Match": "garbage"}), 412)
    assert requests.get(url).json()["version"] == 1
    r = requests.put(url, json=body, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert requests.delete(url, headers={"If-Match": 'W/"2"'}).status_code == 204


# ---- collections, paging, sort, search ----

def seed(api, n):
    types = ["FEDERAL", "STATE", "LOCAL"]
    for i in range(n):
        create(api, title=f"Election {i:02d}", date=f"20{10 + i:02d}-11-0{1 + i % 8}",
               electionType=types[i % 3])


def test_list_is_hal_with_paging(api):
    seed(api, 5)
    r = requests.get(f"{api}/elections", params={"page": 1, "size": 2, "sort": "title"})
    assert r.status_code == 200
    body = r.json()
    assert body["page"] == {"size": 2, "totalElements": 5, "totalPages": 3, "number": 1}
    titles = [e["title"] for e in body["_embedded"]["elections"]]
    assert titles == ["Election 02", "Election 03"]
    links = body["_links"]
    assert {"self", "first", "prev", "next", "last", "profile", "search"} <= set(links)
    assert links["next"]["href"].endswith("/election/elections?page=2&size=2")


def test_sort_desc_and_multiple(api):
    seed(api, 4)
    body = requests.get(f"{api}/elections", params={"sort": "date,desc"}).json()
    dates = [e["date"] for e in body["_embedded"]["elections"]]
    assert dates == sorted(dates, reverse=True)
    body = requests.get(f"{api}/elections", params=[("sort", "electionType,asc"), ("sort", "title,desc")]).json()
    pairs = [(e["electionType"], e["title"]) for e in body["_embedded"]["elections"]]
    assert pairs == sorted(pairs, key=lambda p: (p[0], [-ord(c) for c in p[1]]))


def test_empty_collection(api):
    body = requests.get(f"{api}/elections").json()
    assert body["_embedded"]["elections"] == []
    assert body["page"] == {"size": 20, "totalElements": 0, "totalPages": 0, "number": 0}


def test_size_is_capped(api):
    assert requests.get(f"{api}/elections", params={"size": 100000}).json()["page"]["size"] == 1000


def test_links_follow_forwarded_host(api):
    item = create(api)
    r = requests.get(f"{api}/elections/{item['id']}",
                     headers={"X-Forwarded-Host": "voter.example", "X-Forwarded-Proto": "https"})
    assert r.json()["_links"]["self"]["href"] == f"https://voter.example/election/elections/{item['id']}"


def test_search_by_election_type_containing(api):
    seed(api, 6)
    create(api, title="Odd one", electionType="FED.*")
    body = requests.get(f"{api}/elections/search/findByElectionTypeContaining",
                        params={"electionType": "FED"}).json()
    types = sorted(e["electionType"] for e in body["_embedded"]["elections"])
    assert types == ["FED.*", "FEDERAL", "FEDERAL"]
    # regex metacharacters match literally
    body = requests.get(f"{api}/elections/search/findByElectionTypeContaining",
                        params={"electionType": ".*"}).json()
    assert [e["title"] for e in body["_embedded"]["elections"]] == ["Odd one"]
    assert_problem(requests.get(f"{api}/elections/search/findByElectionTypeContaining"), 400)
    links = requests.get(f"{api}/elections/search").json()["_links"]
    assert "findByElectionTypeContaining" in links


def test_summary_lists_titles_sorted(api):
    create(api, title="b, with comma. and dot")
    create(api, title="a first")
    assert requests.get(f"{api}/summary").json() == {"elections": ["a first", "b, with comma. and dot"]}


def test_drop_deletes_everything(api):
    seed(api, 3)
    r = admin("POST", f"{api}/drop/elections")
    assert r.status_code == 204
    assert count(api) == 0 and requests.get(f"{api}/summary").json() == {"elections": []}


def test_replay_is_202(api):
    seed(api, 2)
    r = admin("POST", f"{api}/events/replay")
    assert r.status_code == 202 and r.json() == {"republished": 2}


# ---- operations, protocol ----

def test_health_ready_info_metrics(api):
    assert requests.get(f"{api}/health").json() == {"status": "UP"}
    assert requests.get(f"{api}/actuator/health").json() == {"status": "UP"}
    ready = requests.get(f"{api}/ready")
    assert ready.status_code == 200 and ready.json()["components"]["mongodb"] == "UP"
    info = requests.get(f"{api}/info").json()
    assert info["name"] == "election" and info["mongodb"]["status"] == "UP"
    assert {"version", "gitCommit", "hostname", "uptimeSeconds", "rabbitmq"} <= set(info)
    requests.get(f"{api}/elections")
    text = requests.get(f"{api}/metrics").text
    assert 'http_requests_total{route="/election/elections",method="GET",status="200"}' in text
    assert "http_request_duration_seconds_bucket" in text


def test_unknown_path_404_and_wrong_method_405_with_allow(api, svc):
    assert_problem(requests.get(f"{svc.url}/electionX/elections"), 404)
    assert_problem(requests.get(f"{api}/nothing"), 404)
    r = requests.delete(f"{api}/elections")
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


def test_cors_preflight_and_origin(api):
    r = requests.options(f"{api}/elections", headers={
        "Origin": "http://dashboard.local", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://dashboard.local"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = requests.get(f"{api}/elections", headers={"Origin": "http://dashboard.local"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://dashboard.local"


def test_cors_allow_list(service_factory):
    svc = service_factory("election", env={"CORS_ALLOWED_ORIGINS": "https://ok.example"})
    r = requests.get(f"{svc.url}/election/elections", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(f"{svc.url}/election/elections", headers={"Origin": "https://ok.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://ok.example"


def test_request_id_is_kept_or_generated_and_logged(api, svc):
    r = requests.get(f"{api}/elections", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    generated = requests.get(f"{api}/elections").headers["X-Request-ID"]
    assert len(generated) == 36
    lines = [json.loads(l) for l in svc.log_lines() if l.startswith("{")]
    logged = [l for l in lines if l.get("msg") == "request" and l.get("requestId") == "abc-123"]
    assert logged and logged[0]["status"] == 200 and logged[0]["route"] == "/election/elections"


def test_keep_alive_reuses_the_connection(api, svc):
    with socket.create_connection(("127.0.0.1", int(svc.url.rsplit(":", 1)[1]))) as s:
        for _ in range(3):
            s.sendall(b"GET /election/health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b'{"status":"UP"}'):
                chunk = s.recv(4096)
                assert chunk, "server closed a keep-alive connection"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" not in data


def test_title_with_encoded_slash_and_dot_in_path_is_not_truncated(api):
    # a title is never a path segment here, but an id with a trailing dot must not match
    item = create(api)
    assert requests.get(f"{api}/elections/{item['id']}.json").status_code == 404
    assert requests.get(f"{api}/elections/{quote(item['id'] + '/x', safe='')}").status_code == 404


# ---- bad-input catalogue: right 4xx, nothing written ----

BAD_BODIES = [
    ("malformed JSON", b'{"title": "x", ', 400, None),
    ("empty body", b"", 400, None),
    ("array body", b"[1,2]", 422, ""),
    ("string body", b"\"x\"", 422, ""),
    ("missing title", json.dumps({k: v for k, v in ELECTION.items() if k != "title"}), 422, "title"),
    ("missing date", json.dumps({k: v for k, v in ELECTION.items() if k != "date"}), 422, "date"),
    ("empty title", json.dumps(dict(ELECTION, title="")), 422, "title"),
    ("title wrong type", json.dumps(dict(ELECTION, title=42)), 422, "title"),
    ("date wrong type", json.dumps(dict(ELECTION, date=20161108)), 422, "date"),
    ("impossible date", json.dumps(dict(ELECTION, date="2016-02-30")), 422, "date"),
    ("not a date", json.dumps(dict(ELECTION, date="next tuesday")), 422, "date"),
    ("type wrong type", json.dumps(dict(ELECTION, electionType=["FEDERAL"])), 422, "electionType"),
    ("unknown field", json.dumps(dict(ELECTION, winner="me")), 422, "winner"),
    ("dollar key", json.dumps(dict(ELECTION, **{"$where": "1"})), 422, "$where"),
    ("nested dollar key", json.dumps(dict(ELECTION, description={"$gt": ""})), 422, "description.$gt"),
    ("dotted key", json.dumps(dict(ELECTION, **{"a.b": 1})), 422, "a.b"),
    ("duplicate key", b'{"title":"a","title":"b","date":"2016-11-08"}', 400, None),
    ("huge title", json.dumps(dict(ELECTION, title="x" * 10000)), 422, "title"),
    ("NUL in title", json.dumps(dict(ELECTION, title="a\u0000b")), 400, None),  # jansson refuses \u0000
]


@pytest.mark.parametrize("name,body,status,field", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_post_body_is_rejected_and_nothing_written(api, name, body, status, field):
    r = requests.post(f"{api}/elections", data=body, headers=JSON)
    assert_problem(r, status, field)
    assert count(api) == 0


@pytest.mark.parametrize("name,body,status,field", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_put_body_changes_nothing(api, name, body, status, field):
    item = create(api)
    r = requests.put(f"{api}/elections/{item['id']}", data=body, headers=JSON)
    assert_problem(r, status)
    assert requests.get(f"{api}/elections/{item['id']}").json()["version"] == 1


def test_wrong_content_type_is_415(api):
    r = requests.post(f"{api}/elections", data=json.dumps(ELECTION), headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)
    r = requests.post(f"{api}/elections", data=json.dumps(ELECTION))  # no Content-Type at all
    assert_problem(r, 415)
    assert count(api) == 0


def test_two_megabyte_body_is_413(api):
    body = json.dumps(dict(ELECTION, description="x" * (2 * 1024 * 1024)))
    try:
        r = requests.post(f"{api}/elections", data=body, headers=JSON)
        assert_problem(r, 413)
    except requests.exceptions.ConnectionError:
        pytest.fail("the server must answer 413, not just drop the connection")
    assert count(api) == 0


def test_chunked_body_over_limit_is_413(api):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536
    r = requests.post(f"{api}/elections", data=chunks(), headers=JSON)
    assert_problem(r, 413)
    assert count(api) == 0


def test_id_with_wrong_length_in_id_field_is_422(api):
    item = create(api)
    r = requests.put(f"{api}/elections/{item['id']}", json=dict(ELECTION, id="0" * 24))
    assert_problem(r, 422, "id")


BAD_QUERIES = [
    {"page": "-1"}, {"page": "abc"}, {"size": "0"}, {"size": "-5"}, {"size": "1e3"},
    {"sort": "nosuchfield"}, {"sort": "title,sideways"}, {"sort": ""}, {"sort": "$where"},
    {"page": "99999999999999999999"},
]


@pytest.mark.parametrize("params", BAD_QUERIES, ids=[str(q) for q in BAD_QUERIES])
def test_bad_paging_parameters_are_400(api, params):
    assert_problem(requests.get(f"{api}/elections", params=params), 400)


def test_injection_in_search_is_literal(api):
    create(api)
    r = requests.get(f"{api}/elections/search/findByElectionTypeContaining",
                     params={"electionType": '{"$ne": null}'})
    assert r.status_code == 200 and r.json()["page"]["totalElements"] == 0


def test_renaming_to_a_taken_title_is_409_on_put_patch_and_put_create(api):
    a = create(api, title="A")
    create(api, title="B")
    assert_problem(requests.put(f"{api}/elections/{a['id']}", json=dict(ELECTION, title="B")), 409)
    assert_problem(requests.patch(f"{api}/elections/{a['id']}", json={"title": "B"}), 409)
    assert_problem(requests.put(f"{api}/elections/{'5' * 24}", json=dict(ELECTION, title="B")), 409)
    assert requests.get(f"{api}/elections/{a['id']}").json()["title"] == "A"
    assert count(api) == 2


# ---- Idempotency-Key ----

def test_a_keyed_create_retried_is_one_election_and_the_first_answer(api):
    key = {"Idempotency-Key": "e-1", **caller_headers("POST", f"{api}/elections", "a" * 64)}
    first = requests.post(f"{api}/elections", json=ELECTION, headers=key)
    again = requests.post(f"{api}/elections", json=dict(reversed(list(ELECTION.items()))), headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers
    assert count(api) == 1
    # the same key with another body, from the same caller
    assert_problem(requests.post(f"{api}/elections", json=dict(ELECTION, title="Other"), headers=key), 422)
    # the same key from another caller is another key: here the title is taken
    other = requests.post(f"{api}/elections", json=ELECTION, headers={**key, **caller_headers("POST", f"{api}/elections", "b" * 64)})
    assert_problem(other, 409)
    # changed or deleted later, a retry still gets the first answer and creates nothing
    eid = first.json()["id"]
    assert requests.delete(f"{api}/elections/{eid}").status_code == 204
    late = requests.post(f"{api}/elections", json=ELECTION, headers=key)
    assert late.status_code == 201 and late.json() == first.json()
    assert count(api) == 0
    assert_problem(requests.post(f"{api}/elections", json=ELECTION, headers={"Idempotency-Key": "k" * 256}), 400)
