#!/usr/bin/python3
"""Generates docs/openapi.json, the suite's OpenAPI 3.0 description (served by the gateway at
/openapi.json). Edit this file, run it, commit both: tests/test_docs.py checks they agree."""

import json
from pathlib import Path

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}

def problem(*codes):
    text = {400: "malformed JSON or bad query parameter", 401: "no API key, or an unknown one (the gateway)",
            403: "the key's tier lacks the scope this operation needs; sent straight to a service, an admin "
                 "operation without the gateway's proof (X-Gateway-Proof) holding the admin scope",
            404: "unknown id or path",
            405: "wrong method", 409: "conflict", 412: "If-Match does not match", 413: "body too large",
            415: "not JSON", 422: "well-formed but invalid", 429: "rate limited", 503: "dependency down"}
    return {str(c): {"description": text[c], "content": {"application/problem+json": {"schema": ref("Problem")}}}
            for c in codes}

def ok(code, desc, schema=None, ctype="application/json", headers=None):
    r = {"description": desc}
    if schema is not None:
        r["content"] = {ctype: {"schema": schema}}
    if headers:
        r["headers"] = {h: {"schema": {"type": "string"}} for h in headers}
    return {str(code): r}

def op(summary, responses, params=None, body=None, tags=None):
    o = {"summary": summary, "responses": responses}
    if params:
        o["parameters"] = params
    if body:
        o["requestBody"] = {"required": True, "content": body}
    if tags:
        o["tags"] = tags
    return o

def path_param(name, desc):
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}

def query(name, desc, typ="string", required=False):
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": typ}}

PAGING = [query("page", "0-based page", "integer"), query("size", "page size (default 20, capped at 1000)", "integer"),
          query("sort", "property[,asc|desc], repeatable")]
ID = path_param("id", "24-hex ObjectId")
TITLE = path_param("election", "election title, URL-encoded (may contain spaces, commas, dots)")
IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"}, "description": '"<version>"'}
IDEM = {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "1-255 printable ASCII characters, scoped per caller (the X-Consumer-ID the gateway sets; "
                       "anonymous callers share one scope). A retry with the same key and the same request is "
                       "answered as the first was, with Idempotent-Replayed: true, and creates nothing, whatever "
                       "point an earlier attempt reached. Another request under the same key: 422 "
                       "(jobs: 409)."}
JSON_BODY = lambda s: {"application/json": {"schema": s}}

def crud(ctx, plural, singular, schema, input_schema, tag, searches):
    base = f"/{ctx}/{plural}"
    hal = {"type": "object", "properties": {"_embedded": {"type": "object", "properties": {plural: {"type": "array", "items": ref(schema)}}},
                                             "_links": {"type": "object"}, "page": ref("Page")}}
    paths = {
        base: {
            "get": op(f"List {plural} (HAL, paged)", {**ok(200, "a page", hal, "application/hal+json"), **problem(400)}, PAGING, tags=[tag]),
            "post": op(f"Create a {singular}", {**ok(201, "created (or replayed)", ref(schema), "application/hal+json",
                                                         ["Location", "ETag", "Idempotent-Replayed"]),
                                                **problem(400, 409, 413, 415, 422)}, [IDEM], body=JSON_BODY(ref(input_schema)), tags=[tag]),
        },
        f"{base}/{{id}}": {
            "get": op(f"Get a {singular}", {**ok(200, "the item", ref(schema), "application/hal+json", ["ETag"]), **ok(304, "not modified"), **problem(404)}, [ID], tags=[tag]),
            "put": op(f"Replace (or create with this id)", {**ok(200, "replaced", ref(schema), "application/hal+json"), **ok(201, "created", ref(schema), "application/hal+json"),
                                                             **problem(400, 409, 412, 413, 415, 422)}, [ID, IF_MATCH], JSON_BODY(ref(input_schema)), tags=[tag]),
            "patch": op("JSON merge patch", {**ok(200, "patched", ref(schema), "application/hal+json"), **problem(400, 404, 409, 412, 415, 422)}, [ID, IF_MATCH],
                        {"application/merge-patch+json": {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}}, tags=[tag]),
            "delete": op(f"Delete a {singular}", {**ok(204, "deleted"), **problem(404, 412)}, [ID, IF_MATCH], tags=[tag]),
        },
    }
    for name, param in searches:
        paths[f"{base}/search/{name}"] = {"get": op(f"Search {plural}", {**ok(200, "a page", hal, "application/hal+json"), **problem(400)},
                                                    [query(param, "substring", required=True)] + PAGING, tags=[tag])}
    return paths

def ops(ctx, tag):
    return {
        f"/{ctx}/health": {"get": op("Liveness", ok(200, "UP", {"type": "object"}), tags=[tag])},
        f"/{ctx}/ready": {"get": op("Readiness (database reachable)", {**ok(200, "ready", {"type": "object"}), **problem(503)}, tags=[tag])},
        f"/{ctx}/info": {"get": op("Name, version, commit, uptime, dependencies", ok(200, "info", {"type": "object"}), tags=[tag])},
        f"/{ctx}/metrics": {"get": op("Prometheus metrics", ok(200, "text", {"type": "string"}, "text/plain"), tags=[tag])},
    }

def replica_list(path, plural, schema, tag, extra=()):
    hal = {"type": "object", "properties": {"_embedded": {"type": "object", "properties": {plural: {"type": "array", "items": ref(schema)}}}, "page": ref("Page")}}
    return {path: {"get": op(f"Read-only replica of {plural} (fed by events)", {**ok(200, "a page", hal, "application/hal+json"), **problem(400)}, list(extra) + PAGING, tags=[tag])}}

summary_list = {"type": "object", "properties": {"candidates": {"type": "array", "items": ref("CandidateView")}}}
results = {"type": "object", "properties": {"results": {"type": "array", "items": ref("Result")}}}
count = {"type": "object", "properties": {"votes": {"type": "integer"}}}

paths = {}
paths.update(crud("election", "elections", "election", "Election", "ElectionInput", "election", [("findByElectionTypeContaining", "electionType")]))
paths.update({
    "/election/summary": {"get": op("Distinct election titles", ok(200, "titles", {"type": "object", "properties": {"elections": {"type": "array", "items": {"type": "string"}}}}), tags=["election"])},
    "/election/drop/elections": {"post": op("Delete every election (each emits election.deleted)", ok(204, "dropped"), tags=["election"])},
    "/election/events/replay": {"post": op("Re-publish every election as election.updated", ok(202, "replaying", {"type": "object"}), tags=["election"])},
})
paths.update(ops("election", "election"))
paths.update(crud("candidate", "candidates", "candidate", "Candidate", "CandidateInput", "candidate", [("findByElectionContains", "election")]))
paths["/candidate/candidates"]["get"]["parameters"].append(query("projection", "candidateVoterView: fullName, politicalParty, election"))
paths.update({
    "/candidate/candidates/summary": {"get": op("All candidates, sorted by lastName", ok(200, "candidates", summary_list), tags=["candidate"])},
    "/candidate/candidates/summary/{election}": {"get": op("Candidates of one election, sorted by lastName", ok(200, "candidates", summary_list), [TITLE], tags=["candidate"])},
    "/candidate/drop/candidates": {"post": op("Delete every candidate (each emits candidate.deleted)", ok(204, "dropped"), tags=["candidate"])},
    "/candidate/drop/elections": {"post": op("Clear the election replica and ask the election service to replay", ok(204, "cleared"), tags=["candidate"])},
    "/candidate/events/replay": {"post": op("Re-publish every candidate as candidate.updated", ok(202, "replaying", {"type": "object"}), tags=["candidate"])},
})
paths.update(replica_list("/candidate/elections", "elections", "Election", "candidate"))
paths["/candidate/elections/{id}"] = {"get": op("One replicated election", {**ok(200, "the item", ref("Election"), "application/hal+json"), **problem(404)}, [ID], tags=["candidate"])}
paths.update(replica_list("/candidate/elections/search/findByElectionTypeContaining", "elections", "Election", "candidate", [query("electionType", "substring", required=True)]))
paths.update(ops("candidate", "candidate"))
paths.update({
    "/voter/votes": {
        "get": op("List votes (HAL, paged). Without sort: in insertion order (listing buckets, ids in order within each; one replica's unkeyed votes are in id order), the first and the last page at constant cost. With sort=candidate|election: ties by id, every vote read", {**ok(200, "a page", {"type": "object"}, "application/hal+json"), **problem(400)}, PAGING, tags=["voter"]),
        "post": op("Cast a vote", {**ok(201, "counted (or replayed)", ref("Vote"), "application/hal+json", ["Location", "Idempotent-Replayed"]),
                                   **problem(400, 413, 415, 422)}, [IDEM], JSON_BODY(ref("VoteInput")), tags=["voter"]),
    },
    "/voter/votes/{id}": {"get": op("Get a vote", {**ok(200, "the vote", ref("Vote"), "application/hal+json"), **problem(404)}, [ID], tags=["voter"]),
                          "delete": op("Delete a vote", {**ok(204, "deleted"), **problem(404)}, [ID], tags=["voter"])},
    "/voter/votes/batch": {"post": op("Bulk ingestion (NDJSON or JSON array); written through a durable work queue",
                                      {**ok(202, "accepted (or replayed)", ref("Batch"), headers=["Location", "Retry-After", "Idempotent-Replayed"]),
                                       **problem(400, 413, 415, 422, 503)}, [IDEM],
                                      body={"application/x-ndjson": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "array", "items": ref("VoteInput")}}}, tags=["voter"])},
    "/voter/votes/batch/{id}": {"get": op("Batch progress and per-line rejections", {**ok(200, "status", ref("Batch")), **problem(404)}, [ID], tags=["voter"])},
    "/voter/candidates/{election}": {"get": op("Candidates of an election (replica), sorted by lastName", ok(200, "candidates", summary_list), [TITLE], tags=["voter"])},
    "/voter/results/{election}": {"get": op("Votes per candidate, most first", ok(200, "results", results), [TITLE], tags=["voter"])},
    "/voter/results/{election}/votes": {"get": op("Total votes", ok(200, "total", count), [TITLE], tags=["voter"])},
    "/voter/results/{election}/stream": {"get": op(
        "Live results as Server-Sent Events: an event `results` (data: the same {\"results\": [...]} as GET /voter/results/{election}) "
        "at once and whenever the tallies change (at most one per 250 ms per election, on every replica: changes are announced over RabbitMQ), "
        "a comment line as heartbeat (STREAM_HEARTBEAT_S), `retry: 1000`. Event ids are a hash of the data: Last-Event-ID (or ?lastEventId=) "
        "equal to the current state's id repeats nothing, any other gets the current state. Through the gateway each client address may hold "
        "GATEWAY_MAX_STREAMS_PER_CLIENT streams (429 beyond).",
        {**ok(200, "an endless text/event-stream", {"type": "string"}, "text/event-stream"), **problem(429, 503)},
        [TITLE, {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}, "description": "id of the last event the client has"},
         query("lastEventId", "the same, for clients that cannot set headers")], tags=["voter"])},
    "/voter/winners/{election}": {"get": op("Every candidate tied at the maximum (one consistent read)", ok(200, "winners", results), [TITLE], tags=["voter"])},
    "/voter/winners/{election}/votes": {"get": op("The winning vote count (0 if none)", ok(200, "maximum", count), [TITLE], tags=["voter"])},
    "/voter/simulation/{election}": {
        "post": op("Add 3-25 random votes per known candidate (none known: 200, nothing added, like the original)", ok(200, "done", {"type": "object", "properties": {"message": {"type": "string"}}}), [TITLE], tags=["voter"]),
        "get": op("Compatibility alias of POST (the original used GET)", ok(200, "done", {"type": "object"}), [TITLE], tags=["voter"]),
    },
    "/voter/drop/votes": {"post": op("Delete every vote", ok(204, "dropped"), tags=["voter"])},
    "/voter/drop/candidates": {"post": op("Clear the candidate replica and ask the candidate service to replay", ok(204, "cleared"), tags=["voter"])},
})
paths.update(replica_list("/voter/candidates", "candidates", "Candidate", "voter"))
paths.update(replica_list("/voter/candidates/search/findByElectionContains", "candidates", "Candidate", "voter", [query("election", "substring", required=True)]))
paths.update(replica_list("/voter/elections", "elections", "Election", "voter"))
paths.update(ops("voter", "voter"))
paths.update({
    "/jobs/tabulations": {"post": op("Submit a tabulation (202, then poll)",
                                     {**ok(202, "accepted", ref("JobAccepted"), headers=["Location", "Retry-After"]), **problem(400, 409, 413, 415, 422, 429)}, [IDEM],
                                     {"multipart/form-data": {"schema": {"type": "object", "properties": {"rules": {"type": "string"}, "ballots": {"type": "string", "format": "binary"}, "callbackUrl": {"type": "string"}}}},
                                      "application/json": {"schema": {"type": "object", "properties": {"rules": {"type": "object"}, "ballots": {"type": "string"}, "callbackUrl": {"type": "string"}}}}}, tags=["jobs"])},
    "/jobs/{id}": {"get": op("Job status: 202 while pending/running, 303 to the signed result when done, 200 when failed/cancelled, 410 when purged",
                             {**ok(202, "pending or running", ref("JobStatus"), headers=["Location", "Retry-After"]), **ok(303, "succeeded", headers=["Location"]),
                              **ok(200, "failed or cancelled", ref("JobStatus")), **ok(410, "purged"), **problem(404)},
                             [ID, query("wait", "long-poll up to N seconds (<= 60)", "integer"), query("view", "status: always 200 with the status document")], tags=["jobs"]),
                   "delete": op("Cancel", {**ok(202, "cancelling"), **problem(404, 409)}, [ID], tags=["jobs"])},
    "/jobs/{id}/result": {"get": op("The result (signed, expiring URL)", {**ok(200, "result", {"type": "object"}), **ok(403, "bad or expired signature"), **ok(410, "purged")},
                                    [ID, query("expires", "unix time", "integer", True), query("sig", "hex HMAC", "string", True)], tags=["jobs"])},
    "/jobs/{id}/logs": {"get": op("The batch program's output (tail)", ok(200, "logs", {"type": "string"}, "text/plain"), [ID], tags=["jobs"])},
    "/jobs": {"get": op("The caller's jobs (HAL)", ok(200, "a page", {"type": "object"}, "application/hal+json"), [query("status", "filter")] + PAGING, tags=["jobs"])},
})
paths.update(ops("jobs", "jobs"))
paths.update({
    "/gateway/health": {"get": op("Gateway liveness", ok(200, "UP", {"type": "object"}), tags=["gateway"])},
    "/gateway/metrics": {"get": op("Gateway Prometheus metrics", ok(200, "text", {"type": "string"}, "text/plain"), tags=["gateway"])},
    "/openapi.json": {"get": op("This document", ok(200, "OpenAPI", {"type": "object"}), tags=["gateway"])},
})

# Scopes (README, "Keys and scopes"): reads and votes are anonymous; the rest needs a key
# whose tier holds the scope. Admin operations are also checked by the services themselves.
ADMIN = [("/election/drop/elections", "post"), ("/election/events/replay", "post"),
         ("/candidate/drop/candidates", "post"), ("/candidate/drop/elections", "post"),
         ("/candidate/events/replay", "post"), ("/voter/drop/votes", "post"),
         ("/voter/drop/candidates", "post"), ("/voter/simulation/{election}", "post"),
         ("/voter/simulation/{election}", "get"), ("/voter/votes/{id}", "delete"), ("/jobs/{id}", "delete")]
WRITE = [(f"/{ctx}/{plural}", "post") for ctx, plural in (("election", "elections"), ("candidate", "candidates"))] + \
        [(f"/{ctx}/{plural}/{{id}}", m) for ctx, plural in (("election", "elections"), ("candidate", "candidates"))
         for m in ("put", "patch", "delete")] + [("/voter/votes/batch", "post")]
KEYED = [("/jobs/tabulations", "post")]
KEY_SECURITY = [{"apiKey": []}, {"bearer": []}]
for scope, ops_ in (("admin", ADMIN), ("write", WRITE), (None, KEYED)):
    for path, method in ops_:
        o = paths[path][method]
        o["security"] = KEY_SECURITY
        o["responses"].update(problem(401, 403))
        if scope:
            o["x-required-scope"] = scope
            o["description"] = (f"Needs a key whose tier holds the `{scope}` scope."
                                + (" The service itself also refuses it (403) without the gateway's proof "
                                   "of an admin caller." if scope == "admin" else ""))
        else:
            o["description"] = "Needs a key of any tier (free, paid or admin)."

s = lambda **props: {"type": "object", "properties": props}
string, integer = {"type": "string"}, {"type": "integer"}
nullable = {"type": "string", "nullable": True}
schemas = {
    "Problem": s(type=string, title=string, status=integer, detail=string,
                 errors={"type": "array", "items": s(field=string, message=string)}),
    "Page": s(size=integer, totalElements=integer, totalPages=integer, number=integer),
    "ElectionInput": {**s(title=string, date={"type": "string", "description": "YYYY-MM-DD or ISO 8601"}, electionType=nullable, description=nullable),
                      "required": ["title", "date"], "additionalProperties": False},
    "Election": s(id=string, title=string, date={"type": "string", "example": "2016-11-08T00:00:00.000+0000"}, electionType=nullable,
                  description=nullable, version=integer, _links={"type": "object"}),
    "CandidateInput": {**s(firstName=string, lastName=string, politicalParty=nullable, election=string, homeState=nullable,
                           politcalExperience={"type": "string", "nullable": True, "description": "sic: the original's wire name; politicalExperience also accepted"}),
                       "required": ["firstName", "lastName", "election"], "additionalProperties": False},
    "Candidate": s(id=string, firstName=string, lastName=string, fullName=string, politicalParty=nullable, election=string,
                   homeState=nullable, politcalExperience=nullable, version=integer, _links={"type": "object"}),
    "CandidateView": s(fullName=string, politicalParty=nullable, election=string),
    "VoteInput": {**s(candidate={"type": "string", "description": "full name"}, election={"type": "string", "description": "title"}),
                  "required": ["candidate", "election"], "additionalProperties": False},
    "Vote": s(id=string, candidate=string, election=string, _links={"type": "object"}),
    "Result": s(candidate=string, votes=integer),
    "Batch": s(id=string, status={"type": "string", "enum": ["queued", "completed", "failed"]}, total=integer, accepted=integer,
               rejected=integer, written=integer, rejections={"type": "array", "items": s(line=integer, error=string)}, statusUrl=string),
    "JobAccepted": s(id=string, status=string, statusUrl=string, cancelUrl=string),
    "JobStatus": s(id=string, status={"type": "string", "enum": ["pending", "running", "succeeded", "failed", "cancelled", "purged"]},
                   progress=s(done=integer, total=integer, message=string), attempts=integer, createdAt=string, startedAt=string,
                   reason=string, exitCode=integer, logsUrl=string),
}

doc = {
    "openapi": "3.0.3",
    "info": {"title": "Voter API in C", "version": "0.1.0",
             "description": "Elections, candidates and votes kept consistent through RabbitMQ events, a C gateway, "
                            "and an asynchronous job service for ranked-choice tabulation. Drop-in compatible with the "
                            "Spring Boot Voter API demo. Errors are application/problem+json."},
    "tags": [{"name": t} for t in ("election", "candidate", "voter", "jobs", "gateway")],
    "paths": dict(sorted(paths.items())),
    "components": {"schemas": schemas,
                   "securitySchemes": {
                       "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                  "description": "A key of a tier: free (read vote), paid (read vote write), admin "
                                                 "(read vote write admin). Operations without security are anonymous."},
                       "bearer": {"type": "http", "scheme": "bearer", "description": "The same key as a bearer token."},
                       "gatewayProof": {"type": "apiKey", "in": "header", "name": "X-Gateway-Proof",
                                        "description": "Internal: set by the gateway only (with X-Consumer-ID and "
                                                       "X-Consumer-Scopes), t=<unix s>,sig=HMAC-SHA256(GATEWAY_PROOF_SECRET, "
                                                       "METHOD\\nPATH\\nt\\nCONSUMER\\nSCOPES). The services require it "
                                                       "for admin operations; clients never send it."}}},
}

if __name__ == "__main__":
    out = Path(__file__).with_name("openapi.json")
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({len(paths)} paths)")
