"""The web client (web/, served by the gateway at /) and the live results it stands on:
the voter's Server-Sent Events stream, directly and through the gateway, with one and two
voter replicas; then the pages themselves in headless Chromium (Debian's chromium +
chromium-driver + python3-selenium) against the real stack."""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest
import requests

import harness
from harness import wait_until
from jobs_helpers import jobs_env, tabulate_bin
from web_helpers import (DESKTOP, PHONE, SSE, SAMPLE, chromium, console_errors, enc, load_sample,
                         no_horizontal_scroll, screenshot, tally)

E2016 = "2016 Presidential Election"
TRUMP, CLINTON = "Donald Trump", "Hillary Clinton"
# The example gateway configuration ships no keys: every run makes its own (as scripts/stack
# does) and gives them to the gateway in a keys file. Scopes (README "Keys and scopes"):
# anonymous and free read and vote; paid also writes (elections, candidates) and submits
# counts without a limit (free: one per 5 minutes); admin also drops, replays, simulates.
ADMIN_KEY = "web-admin-" + secrets.token_hex(12)
WRITE_KEY = "web-paid-" + secrets.token_hex(12)
FREE_KEY = "web-free-" + secrets.token_hex(12)
KEYS = {ADMIN_KEY: "admin", WRITE_KEY: "paid", FREE_KEY: "free"}
WRITE = {"X-API-Key": WRITE_KEY}
TABULATE_KEY = WRITE_KEY
STREAMS_PER_CLIENT = 3
FIXTURES = harness.repo_root() / "tabulator" / "tests" / "fixtures"


def vote(base, candidate, election=E2016, **kw):
    return requests.post(f"{base}/voter/votes", json={"candidate": candidate, "election": election}, **kw)


class Stack:
    """The services of one test; .url is the gateway's."""


@pytest.fixture
def make_stack(service_factory, tmp_path):
    """election, candidate, voter (one or two replicas) and the gateway serving web/ (its
    voter route goes to the first replica only), optionally the jobs service; the sample
    data loaded through the gateway with the paid key (write scope). The gateway reads
    KEYS from its keys file and signs what it passes on with the run's proof secret, which
    the services check on admin operations (service_factory gives them the same one)."""
    keys_file = tmp_path / "gateway-keys.json"
    keys_file.write_text(json.dumps(KEYS))

    def make(voters: int = 1, jobs: bool = False, voter_env: dict | None = None) -> Stack:
        s = Stack()
        s.election = service_factory("election")
        s.candidate = service_factory("candidate", env={"ELECTION_URL": s.election.url})
        s.voters = [service_factory("voter", env={"CANDIDATE_URL": s.candidate.url, **(voter_env or {})})
                    for _ in range(voters)]
        s.voter = s.voters[0]
        s.jobs = service_factory("jobs", env=jobs_env(tmp_path / "work")) if jobs else None
        s.gateway = service_factory("gateway", env={
            "GATEWAY_CONFIG": str(harness.repo_root() / "gateway" / "gateway.example.json"),
            "GATEWAY_WEB_ROOT": str(harness.repo_root() / "web"),
            "GATEWAY_MAX_STREAMS_PER_CLIENT": str(STREAMS_PER_CLIENT),
            "GATEWAY_KEYS_FILE": str(keys_file), "GATEWAY_PROOF_SECRET": harness.PROOF_SECRET,
            "ELECTION_URL": s.election.url, "CANDIDATE_URL": s.candidate.url, "VOTER_URL": s.voter.url,
            "JOBS_URL": s.jobs.url if jobs else "127.0.0.1:9"})
        s.url = s.gateway.url
        load_sample(s.url, [v.url for v in s.voters], headers=WRITE)
        return s

    return make


@pytest.fixture
def stack(make_stack):
    return make_stack()


# ---------------------------------------------------------------- the stream, over HTTP

def test_stream_sends_the_state_then_every_change(stack):
    es = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream")
    try:
        assert es.status == 200 and es.headers["content-type"].startswith("text/event-stream")
        first = es.next()
        assert first["event"] == "results" and json.loads(first["data"]) == {"results": []}
        assert vote(stack.voter.url, TRUMP).status_code == 201
        ev = es.results_until(lambda d: tally(d, TRUMP) == 1, timeout=2)
        assert ev["id"] and ev["id"] != first["id"]
        # the same document as GET /voter/results/{election}
        assert json.loads(ev["data"]) == requests.get(f"{stack.voter.url}/voter/results/{enc(E2016)}").json()
    finally:
        es.close()


def test_stream_resume_with_the_current_id_repeats_nothing(stack):
    assert vote(stack.voter.url, CLINTON).status_code == 201
    es = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream")
    first = es.next()
    es.close()
    again = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream", last_event_id=first["id"])
    stale = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream", last_event_id="0123456789abcdef")
    try:
        assert stale.next()["id"] == first["id"]  # an old id gets the current state at once
        with pytest.raises(Exception):
            again.next(timeout=1.5)  # the current id: nothing to repeat
        assert vote(stack.voter.url, CLINTON).status_code == 201
        assert tally(json.loads(again.next(timeout=2)["data"]), CLINTON) == 2
    finally:
        again.close()
        stale.close()


def test_a_vote_on_another_replica_reaches_the_stream_over_the_broker(make_stack):
    # re-reads every minute only: within 2 s, only the broker's announcement can do it
    s = make_stack(voters=2, voter_env={"STREAM_RECHECK_MS": "60000"})
    a, b = s.voters
    es = SSE(f"{a.url}/voter/results/{enc(E2016)}/stream")
    try:
        es.next()
        assert vote(b.url, CLINTON).status_code == 201
        es.results_until(lambda d: tally(d, CLINTON) == 1, timeout=2)
        # a simulation (many votes at once) on the other replica: one more event (an admin
        # operation: straight to the service it needs the gateway's proof)
        assert harness.admin_request("POST", f"{b.url}/voter/simulation/{enc(E2016)}").status_code == 200
        es.results_until(lambda d: tally(d, CLINTON) > 1, timeout=2)
    finally:
        es.close()


def test_unannounced_changes_are_found_by_the_periodic_re_read(stack):
    # bulk ingestion announces nothing: the 1 s re-read of watched elections finds it
    es = SSE(f"{stack.voter.url}/voter/results/{enc(E2016)}/stream")
    try:
        es.next()
        lines = "\n".join(json.dumps({"candidate": TRUMP, "election": E2016}) for _ in range(5))
        r = requests.post(f"{stack.voter.url}/voter/votes/batch", data=lines,
                          headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        es.results_until(lambda d: tally(d, TRUMP) == 5, timeout=10)
    finally:
        es.close()


def test_heartbeats_keep_a_quiet_stream_open(make_stack):
    s = make_stack(voter_env={"STREAM_HEARTBEAT_S": "1"})
    es = SSE(f"{s.url}/voter/results/{enc(E2016)}/stream")  # through the gateway
    try:
        es.next()
        wait_until(lambda: es.comments >= 3, timeout=8, message="three heartbeats")
        assert not es.closed.is_set()
    finally:
        es.close()


# ---------------------------------------------------------------- the gateway

def test_gateway_serves_the_client_with_types_etags_and_a_strict_csp(stack):
    base = stack.url
    page = requests.get(f"{base}/")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.text
    assert "<script" in html and all('src="/web/' in tag for tag in html.split("<script")[1:])
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "") and "https://" not in html
    for path, ctype in (("/web/js/app.js", "text/javascript; charset=utf-8"),
                        ("/web/css/app.css", "text/css; charset=utf-8"),
                        ("/web/favicon.svg", "image/svg+xml"),
                        ("/web/samples/small-irv.ballots.csv", "text/csv; charset=utf-8"),
                        ("/web/samples/small-irv.rules.json", "application/json")):
        r = requests.get(base + path)
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype, path
        assert (harness.repo_root() / "web" / path[5:]).read_bytes() == r.content
        etag = r.headers["ETag"]
        again = requests.get(base + path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        assert requests.head(base + path).headers["ETag"] == etag
    # nothing else is served from the folder, and the folder is not an API route
    assert requests.get(f"{base}/web/nothing.js").status_code == 404
    assert requests.get(f"{base}/web/js").status_code == 404
    assert requests.post(f"{base}/web/js/app.js").status_code in (404, 405)
    # no external resource anywhere in the client
    for f in (harness.repo_root() / "web").rglob("*"):
        if f.suffix in (".html", ".js", ".css"):
            text = f.read_text()
            assert "https://" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", ""), f


def test_the_original_clients_calls_are_unchanged(stack):
    base = stack.url
    assert vote(base, TRUMP).status_code == 201
    for path, key in ((f"/voter/results/{enc(E2016)}", "results"), (f"/voter/results/{enc(E2016)}/votes", "votes"),
                      (f"/voter/winners/{enc(E2016)}", "results"), (f"/voter/candidates/{enc(E2016)}", "candidates"),
                      ("/election/summary", "elections"), ("/candidate/candidates/summary", "candidates")):
        doc = requests.get(base + path).json()
        assert list(doc) == [key], path
    # before an election is chosen the original client asks for ".../undefined": items by id
    # are a clean 404 problem, per-title lists stay empty single-key objects as they were
    for path in ("/election/elections/undefined", "/candidate/candidates/undefined"):
        r = requests.get(base + path)
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json", path
    assert requests.get(f"{base}/voter/results/undefined").json() == {"results": []}
    assert requests.get(f"{base}/voter/candidates/undefined").json() == {"candidates": []}


def test_the_gateway_streams_without_buffering_and_limits_streams_per_client(make_stack):
    # a client that leaves is noticed at the next write to it: the heartbeat
    stack = make_stack(voter_env={"STREAM_HEARTBEAT_S": "2"})
    url = f"{stack.url}/voter/results/{enc(E2016)}/stream"
    streams = [SSE(url) for _ in range(STREAMS_PER_CLIENT)]
    try:
        for es in streams:
            assert es.status == 200 and es.headers["content-type"].startswith("text/event-stream")
            es.next()
        refused = requests.get(url, headers={"Accept": "text/event-stream"}, timeout=5)
        assert refused.status_code == 429, refused.text
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert f"at most {STREAMS_PER_CLIENT}" in refused.json()["detail"]
        # every open stream gets the next change at once, through the gateway
        assert vote(stack.url, TRUMP).status_code == 201
        for es in streams:
            es.results_until(lambda d: tally(d, TRUMP) == 1, timeout=2)
        metrics = requests.get(f"{stack.url}/gateway/metrics").text
        assert f"gateway_streams_open {STREAMS_PER_CLIENT}" in metrics
        assert 'gateway_streams_total{result="refused"} 1' in metrics
    finally:
        for es in streams:
            es.close()
    # closed streams give their slots back (noticed at the next heartbeat or two)
    wait_until(lambda: "gateway_streams_open 0" in requests.get(f"{stack.url}/gateway/metrics").text,
               timeout=20, interval=0.5, message="the slots are released")
    again = SSE(url)
    try:
        assert again.status == 200
    finally:
        again.close()


# ---------------------------------------------------------------- the pages, in Chromium

@pytest.fixture
def browser():
    pytest.importorskip("selenium", reason="python3-selenium is installed by scripts/setup")
    drivers = []

    def open_browser(size=DESKTOP, dark=False):
        d = chromium(size, dark)
        drivers.append(d)
        return d

    yield open_browser
    for d in drivers:
        d.quit()


def wait_for(driver, predicate, timeout=10, message="condition"):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d), message)


def by_css(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def bar(driver, name):
    """(votes text, bar width in %) of one candidate's row in the results chart."""
    row = driver.execute_script(
        "return [...document.querySelectorAll('.chart .crow')].find(r => r.dataset.key === arguments[0])", name)
    if not row:
        return None, 0.0
    fill = row.find_elements("css selector", ".fill")[0]
    return row.find_elements("css selector", ".cvalue")[0].text, float(fill.get_attribute("width").rstrip("%"))


def votes_shown(driver, name):
    text, _ = bar(driver, name)
    return int(text.split()[0]) if text else None


def open_election(driver, base, title=E2016):
    driver.get(f"{base}/#/election/{enc(title)}")
    wait_for(driver, lambda d: by_css(d, ".candidate") and "Live updates: on" in by_css(d, ".live")[0].text,
             timeout=15, message="the election page with its live stream")


def test_elections_list_then_the_election_page(stack, browser):
    for _ in range(3):
        assert vote(stack.url, TRUMP).status_code == 201
    assert vote(stack.url, CLINTON).status_code == 201
    d = browser()
    d.get(stack.url + "/")
    wait_for(d, lambda d: len(by_css(d, "table.elections tbody tr")) == len(SAMPLE["elections"]),
             message="every sample election listed")
    rows = [r.text for r in by_css(d, "table.elections tbody tr")]
    for e in SAMPLE["elections"]:
        assert any(e["title"] in r and e["date"] in r and e["electionType"] in r for r in rows), e
    # search by title
    search = by_css(d, "#search")[0]
    search.send_keys("new york")
    wait_for(d, lambda d: len(by_css(d, "table.elections tbody tr")) == 2)
    screenshot(d, "elections-desktop")
    search.clear()
    search.send_keys("2016")
    wait_for(d, lambda d: len(by_css(d, "table.elections tbody tr")) == 1)
    by_css(d, "table.elections tbody a")[0].click()
    wait_for(d, lambda d: by_css(d, ".candidate"), message="the election page")
    assert by_css(d, "h1")[0].text == E2016
    shown = {li.get_attribute("data-name"): li.text for li in by_css(d, ".candidate")}
    expected = [c for c in SAMPLE["candidates"] if c["election"] == E2016]
    assert set(shown) == {f"{c['firstName']} {c['lastName']}" for c in expected}
    for c in expected:
        text = shown[f"{c['firstName']} {c['lastName']}"]
        assert c["politicalParty"] in text and c.get("homeState", "") in text
    wait_for(d, lambda d: votes_shown(d, TRUMP) == 3 and votes_shown(d, CLINTON) == 1)
    assert "75.0%" in bar(d, TRUMP)[0]
    assert "Total votes: 4" in by_css(d, ".total")[0].text
    assert "Winner: Donald Trump" in by_css(d, ".winner-line")[0].text
    trump_li = [li for li in by_css(d, ".candidate") if li.get_attribute("data-name") == TRUMP][0]
    assert "winner" in trump_li.get_attribute("class")
    screenshot(d, "election-desktop")
    assert console_errors(d) == []


def test_a_double_click_counts_once_and_the_bar_grows(stack, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    assert vote(stack.url, TRUMP).status_code == 201
    assert vote(stack.url, TRUMP).status_code == 201
    d = browser()
    open_election(d, stack.url)
    wait_for(d, lambda d: votes_shown(d, CLINTON) == 0 and votes_shown(d, TRUMP) == 2)
    _, before = bar(d, CLINTON)
    button = d.find_element("css selector", f'button[aria-label="Vote for {CLINTON}"]')
    ActionChains(d).double_click(button).perform()
    wait_for(d, lambda d: "Counted" in button.find_element("xpath", "following-sibling::p").text,
             message="the button says the vote was counted")
    wait_for(d, lambda d: votes_shown(d, CLINTON) == 1, message="the page shows the vote")
    _, after = bar(d, CLINTON)
    assert after > before
    time.sleep(1.5)  # a second vote, had one been sent, would have been counted by now
    assert requests.get(f"{stack.url}/voter/results/{enc(E2016)}").json()["results"][0:2] == \
        [{"candidate": TRUMP, "votes": 2}, {"candidate": CLINTON, "votes": 1}]
    assert votes_shown(d, CLINTON) == 1
    # a second, separate click is a second vote
    wait_for(d, lambda d: button.get_attribute("aria-disabled") is None)
    button.click()
    wait_for(d, lambda d: votes_shown(d, CLINTON) == 2)
    assert console_errors(d) == []


def test_a_vote_from_another_client_appears_within_two_seconds(stack, browser):
    d = browser()
    open_election(d, stack.url)
    for n in (1, 2):
        t0 = time.monotonic()
        assert vote(stack.url, TRUMP).status_code == 201
        wait_for(d, lambda d: votes_shown(d, TRUMP) == n, timeout=2, message="the vote shows within 2 s")
        assert time.monotonic() - t0 < 2
    assert console_errors(d) == []


def test_a_vote_on_the_other_voter_replica_appears_within_two_seconds(make_stack, browser):
    # the gateway (and so the page's stream) reaches the first replica only; the periodic
    # re-read is a minute: only the broker's announcement can bring the vote in time
    s = make_stack(voters=2, voter_env={"STREAM_RECHECK_MS": "60000"})
    d = browser()
    open_election(d, s.url)
    t0 = time.monotonic()
    assert vote(s.voters[1].url, CLINTON).status_code == 201
    wait_for(d, lambda d: votes_shown(d, CLINTON) == 1, timeout=2, message="the other replica's vote within 2 s")
    assert time.monotonic() - t0 < 2
    assert console_errors(d) == []


def test_the_stream_resumes_after_the_voter_service_restarts(stack, browser):
    d = browser()
    open_election(d, stack.url)
    assert vote(stack.url, TRUMP).status_code == 201
    wait_for(d, lambda d: votes_shown(d, TRUMP) == 1)
    stack.voter.restart()
    assert vote(stack.url, TRUMP).status_code == 201
    # the page retries with a back-off (1, 2, 4... s) while the service is down
    wait_for(d, lambda d: votes_shown(d, TRUMP) == 2, timeout=30, message="the page follows the restarted service")
    wait_for(d, lambda d: "Live updates: on" in by_css(d, ".live")[0].text)
    # and it is live again, not just reloaded once
    assert vote(stack.url, TRUMP).status_code == 201
    wait_for(d, lambda d: votes_shown(d, TRUMP) == 3, timeout=2)
    # while the service was down the stream's requests failed: those are the only errors
    assert console_errors(d, allow=("/stream",)) == []


@pytest.fixture
def jobs_stack(make_stack):
    return make_stack(jobs=True)


def type_key(d, key):
    field = by_css(d, "#api-key")[0]
    field.clear()
    if key:
        field.send_keys(key)


def test_a_tabulation_through_the_page_shows_the_rounds_and_the_winner(jobs_stack, browser, tmp_path):
    expected = json.loads((FIXTURES / "small-irv" / "expected.json").read_text())
    d = browser()
    d.get(jobs_stack.url + "/#/tabulate")
    wait_for(d, lambda d: by_css(d, "#tabulate"))
    type_key(d, TABULATE_KEY)
    by_css(d, "#rules-file")[0].send_keys(str(FIXTURES / "small-irv" / "rules.json"))
    by_css(d, "#ballots-file")[0].send_keys(str(FIXTURES / "small-irv" / "ballots.csv"))
    by_css(d, "#tabulate")[0].click()
    wait_for(d, lambda d: by_css(d, "#winners"), timeout=60, message="the count")
    assert by_css(d, "#winners")[0].text == f"Winner: {', '.join(expected['winners'])}"
    rounds = by_css(d, "section.round")
    assert len(rounds) == len(expected["rounds"])
    for want in expected["rounds"]:
        by_css(d, "#round")[0]  # the slider exists; steps are driven with the buttons
        d.execute_script("const s = document.getElementById('round'); s.value = arguments[0];"
                         "s.dispatchEvent(new Event('input'))", want["round"])
        section = [r for r in by_css(d, "section.round") if r.is_displayed()]
        assert len(section) == 1 and section[0].get_attribute("data-round") == str(want["round"])
        rows = {r.get_attribute("data-key"): r.text for r in section[0].find_elements("css selector", ".crow")}
        assert set(rows) == set(want["tally"])
        for name, votes in want["tally"].items():
            assert rows[name].endswith(str(votes)), (name, rows[name])
        for name in want["eliminated"]:
            assert "Eliminated" in rows[name]
        for name in want["elected"]:
            assert "Elected" in rows[name]
        text = section[0].text
        assert f"threshold ({want['threshold']})" in text
        for source, to in want["transfers"].items():
            for target, n in to.items():
                if target != "exhausted":
                    assert f"{n} to {target}" in text
        for category, n in want["inactive"].items():
            assert f"{category.replace('_', ' ')} {n}" in text
        screenshot(d, f"tabulation-round-{want['round']}")
    # keyboard: the previous-round button steps back
    by_css(d, "#prev-round")[0].click()
    assert by_css(d, "#round-label")[0].text == f"Round {len(expected['rounds']) - 1} of {len(expected['rounds'])}"
    href = by_css(d, "#download")[0].get_attribute("href")
    assert href.startswith("blob:")
    assert console_errors(d) == []

    # a malformed ballots file: the API's line and column on the page
    bad = tmp_path / "bad.csv"
    bad.write_text("id,rank1,rank2\nb1,A,B\nb2,A,Zed\n")
    by_css(d, "#ballots-file")[0].send_keys(str(bad))
    by_css(d, "#tabulate")[0].click()
    wait_for(d, lambda d: "Refused" in by_css(d, "#job-status")[0].text, timeout=20)
    status = by_css(d, "#job-status")[0].text
    assert "line 3" in status and "column" in status and "Zed" in status, status
    screenshot(d, "tabulation-error")
    assert console_errors(d, allow=("/jobs/tabulations",)) == []  # the 422 itself


def exact(text):
    """A results file with every number kept as the text the file has."""
    return json.loads(text, parse_float=str, parse_int=str)


def show_round(d, index):
    """Selects the index-th round (1-based) with the slider; the one section shown."""
    d.execute_script("const s = document.getElementById('round'); s.value = arguments[0];"
                     "s.dispatchEvent(new Event('input'))", index)
    shown = [r for r in by_css(d, "section.round") if r.is_displayed()]
    assert len(shown) == 1
    return shown[0]


def tabulate_files(d, rules, ballots):
    by_css(d, "#rules-file")[0].send_keys(str(rules))
    by_css(d, "#ballots-file")[0].send_keys(str(ballots))
    by_css(d, "#tabulate")[0].click()
    wait_for(d, lambda d: by_css(d, "#winners") and "Done." in by_css(d, "#job-status")[0].text,
             timeout=60, message="the count")
    shown = by_css(d, "#count")[0].text
    assert "null" not in shown and "undefined" not in shown and "NaN" not in shown, shown


def check_multi_winner_rounds(d, want):
    """Every round of the page against the results file want (numbers as their text): the
    tallies, who was elected (this round or before) or eliminated, the threshold, the
    surplus transfers of this round's winners apart from the eliminated candidates'
    ballots, the residual surplus of each winner, the final round surplus, the inactive
    ballots. Returns the sections' text by round."""
    elected_in = {}
    for r in want["rounds"]:
        for name in r["elected"]:
            elected_in.setdefault(name, r["round"])
    texts = {}
    for index, r in enumerate(want["rounds"], 1):
        section = show_round(d, index)
        assert section.get_attribute("data-round") == r["round"]
        rows = {row.get_attribute("data-key"): row for row in section.find_elements("css selector", ".crow")}
        assert set(rows) == set(r["tally"])
        for name, votes in r["tally"].items():
            text = rows[name].text
            assert text.endswith(votes), (r["round"], name, text)
            if name in r["elected"]:
                assert "Elected" in text and "Elected in" not in text, text
            elif name in elected_in and int(elected_in[name]) < int(r["round"]):
                assert f"Elected in round {elected_in[name]}" in text, text
            elif name in r["eliminated"]:
                assert "Eliminated" in text, text
            else:
                assert "Elected" not in text and "Eliminated" not in text, text
            # the part over the threshold of a winner whose surplus moves on is drawn apart
            over = rows[name].find_elements("css selector", "rect.surplus")[0]
            drawn = over.get_attribute("visibility") != "hidden" and float(over.get_attribute("width").rstrip("%")) > 0
            assert drawn == (name in r["elected"] and name in r["transfers"]), (r["round"], name)
        text = section.text
        assert f"threshold ({r['threshold']})" in text
        for source, to in r["transfers"].items():
            kind = "surplus" if source in r["elected"] else "elimination"
            item = section.find_elements("css selector", f"ul.transfers.{kind} li")
            item = [li for li in item if li.get_attribute("data-from") == source]
            assert len(item) == 1, (r["round"], source, kind)
            for target, amount in to.items():
                if target == "residual_surplus":
                    assert f"residual surplus {amount}" in item[0].text
                    cell = section.find_elements("css selector", "table.surplus tr[data-kind=residual]")
                    assert [c.text for c in cell if c.get_attribute("data-from") == source] == \
                        [f"residual surplus of {source} {amount}"]
                elif target == "exhausted":
                    assert f"{amount} to no one (exhausted)" in item[0].text
                else:
                    assert f"{amount} to {target}" in item[0].text
        if not any(source in r["elected"] for source in r["transfers"]):
            assert not section.find_elements("css selector", "ul.transfers.surplus")
        for category, amount in r["inactive"].items():
            if category == "final_round_surplus":
                final = section.find_elements("css selector", "table.surplus tr[data-kind=final]")
                assert [f.text for f in final] == [f"final round surplus {amount}"]
            else:
                assert f"{category.replace('_', ' ')} {amount}" in text
        texts[r["round"]] = text
    return texts


def test_a_multi_winner_count_shows_the_winners_the_threshold_and_the_surpluses(jobs_stack, browser, tmp_path):
    """Issue 18: STV with fractional surplus transfers (tabulator/tests/fixtures/
    stv-fractional), then the same count at 20 decimal places, whose numbers no double
    holds: every number on the page is the file's own text."""
    fixture = FIXTURES / "stv-fractional"
    want = exact((fixture / "expected.json").read_text())
    d = browser()
    d.get(jobs_stack.url + "/#/tabulate")
    wait_for(d, lambda d: by_css(d, "#tabulate"))
    type_key(d, TABULATE_KEY)
    tabulate_files(d, fixture / "rules.json", fixture / "ballots.csv")
    assert by_css(d, "#winners")[0].text == f"Winners: {', '.join(want['winners'])}"
    elected_in = {name: r["round"] for r in want["rounds"] for name in r["elected"]}
    assert [li.text for li in by_css(d, "#winner-list li")] == \
        [f"{name} — elected in round {elected_in[name]}" for name in want["winners"]]
    assert by_css(d, "#threshold")[0].text == f"Threshold: {want['threshold']} votes"
    texts = check_multi_winner_rounds(d, want)
    # round 2 in words: C elected, its surplus moves on, 0.0003 of it to no one
    round2 = texts["2"]
    assert "Candidate C Name's surplus: 0.6559 to Candidate E Name, 0.0937 to Candidate F Name; " \
           "residual surplus 0.0003 (to no one)" in round2
    assert "residual surplus of Candidate C Name 0.0003" in round2
    show_round(d, 2)
    screenshot(d, "tabulation-stv-round-2")
    show_round(d, 5)  # two winners at once: two surpluses, two residuals and their sum
    assert by_css(d, "table.surplus tr[data-kind=residual-total]")[0].text == "residual surplus, all 0.0005"
    screenshot(d, "tabulation-stv-round-5")
    assert "final round surplus 5.8741" in show_round(d, 6).text
    screenshot(d, "tabulation-stv-round-6")
    assert console_errors(d) == []

    # 20 decimal places: the threshold 7.25000000000000000001 would be 7.25 as a double
    rules = json.loads((fixture / "rules.json").read_text())
    rules["decimal_places"] = 20
    (tmp_path / "rules20.json").write_text(json.dumps(rules))
    out = tmp_path / "result20.json"
    subprocess.run([str(tabulate_bin()), "--ballots", str(fixture / "ballots.csv"),
                    "--rules", str(tmp_path / "rules20.json"), "--out", str(out)], check=True, timeout=120)
    text20 = out.read_text()
    want20 = exact(text20)
    assert want20["threshold"] == "7.25000000000000000001"
    tabulate_files(d, tmp_path / "rules20.json", fixture / "ballots.csv")
    assert by_css(d, "#threshold")[0].text == "Threshold: 7.25000000000000000001 votes"
    texts = check_multi_winner_rounds(d, want20)
    assert "0.65624999999999999993 to Candidate E Name" in texts["2"]
    show_round(d, 2)
    screenshot(d, "tabulation-stv-20-decimals")
    # numbers of 22 digits still fit a phone's width
    d.set_window_size(*PHONE)
    wait_for(d, lambda d: d.execute_script("return innerWidth") == PHONE[0])
    for index in range(1, len(want20["rounds"]) + 1):
        show_round(d, index)
        assert no_horizontal_scroll(d), f"round {index} scrolls sideways at {PHONE[0]} px"
    show_round(d, 3)
    screenshot(d, "tabulation-stv-20-decimals-phone")
    d.set_window_size(*DESKTOP)
    # the download is the file itself, not re-serialised from doubles
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    by_css(d, "#download")[0].click()
    saved = downloads / "result.json"
    wait_until(lambda: saved.exists() and saved.read_text() == text20, timeout=20,
               message="the downloaded result is the file tabulate wrote")
    assert console_errors(d) == []

    # sequential passes: rounds named by pass and round, each pass's winner and threshold
    case = harness.repo_root() / "tabulator" / "tests" / "cases" / "multi_7_sequential"
    seq = exact((case / "expected.json").read_text())
    tabulate_files(d, case / "rules.json", case / "ballots.csv")
    assert by_css(d, "#winners")[0].text == f"Winners: {', '.join(seq['winners'])}"
    won = {name: r for r in seq["rounds"] for name in r["elected"]}
    assert [li.text for li in by_css(d, "#winner-list li")] == \
        [f"{name} — elected in pass {won[name]['pass']}, round {won[name]['round']}" for name in seq["winners"]]
    assert [r.text for r in by_css(d, "#passes tbody tr")] == \
        [f"{p['pass']} {p['winner']} {p['rounds']} {p['threshold']}" for p in seq["passes"]]
    n = len(seq["rounds"])
    for index, r in enumerate(seq["rounds"], 1):
        section = show_round(d, index)
        assert (section.get_attribute("data-pass"), section.get_attribute("data-round")) == (r["pass"], r["round"])
        assert by_css(d, "#round-label")[0].text == f"Pass {r['pass']}, round {r['round']} ({index} of {n})"
        assert f"threshold ({r['threshold']})" in section.text
    screenshot(d, "tabulation-sequential")
    assert console_errors(d) == []


def test_the_sample_tabulation_and_a_missing_key(jobs_stack, browser):
    d = browser()
    d.get(jobs_stack.url + "/#/tabulate")
    wait_for(d, lambda d: by_css(d, "#tabulate"))
    by_css(d, "#use-sample")[0].click()
    by_css(d, "#tabulate")[0].click()
    wait_for(d, lambda d: "API key" in by_css(d, "#job-status")[0].text)
    type_key(d, TABULATE_KEY)
    by_css(d, "#tabulate")[0].click()
    wait_for(d, lambda d: by_css(d, "#winners"), timeout=60, message="the count")
    assert by_css(d, "#winners")[0].text == "Winner: B"
    assert console_errors(d) == []


def log_records(service, msg, path):
    """The JSON log records of a service with this msg ("access" for the gateway, "request"
    for the services) and path."""
    out = []
    for line in service.log_lines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("msg") == msg and e.get("path") == path:
            out.append(e)
    return out


def admin_status(d):
    return by_css(d, "#admin-status")[0].text


def confirmed(d, button):
    by_css(d, button)[0].click()
    wait_for(d, lambda d: by_css(d, "dialog[open]"))
    by_css(d, "dialog[open] [data-confirm=yes]")[0].click()


def test_admin_actions_are_refused_without_the_admin_scope_and_done_with_it(stack, browser):
    assert vote(stack.url, TRUMP).status_code == 201
    votes = lambda: requests.get(f"{stack.url}/voter/results/{enc(E2016)}/votes").json()
    d = browser()
    d.get(stack.url + "/#/admin")
    wait_for(d, lambda d: by_css(d, "#replay-elections") and by_css(d, "#simulate-election option"))
    # no key: the gateway refuses (401) before any service sees the request; nothing changes
    type_key(d, "")
    confirmed(d, "#drop-votes")
    wait_for(d, lambda d: admin_status(d).startswith("Drop all votes: refused (401)"))
    assert "needs a key with the admin scope" in admin_status(d), admin_status(d)
    by_css(d, "#replay-elections")[0].click()
    wait_for(d, lambda d: admin_status(d).startswith("Replay elections: refused (401)"))
    # a valid key whose tier lacks the admin scope (paid: read, vote, write): 403, explained
    type_key(d, WRITE_KEY)
    confirmed(d, "#drop-votes")
    wait_for(d, lambda d: admin_status(d).startswith("Drop all votes: refused (403)"))
    assert "this key lacks the admin scope" in admin_status(d), admin_status(d)
    screenshot(d, "admin-refused")
    assert votes() == {"votes": 1}
    # both refusals came from the gateway: it answered them itself, the voter service never
    # saw the request (it logs every request it gets)
    refused = log_records(stack.gateway, "access", "/voter/drop/votes")
    assert [(e["status"], e["upstream"]) for e in refused] == [(401, None), (403, None)], refused
    assert [e["status"] for e in log_records(stack.gateway, "access", "/election/events/replay")] == [401]
    assert log_records(stack.voter, "request", "/voter/votes")  # the vote above: it does log
    assert log_records(stack.voter, "request", "/voter/drop/votes") == []
    # the admin key
    type_key(d, ADMIN_KEY)
    by_css(d, "#replay-elections")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Replay elections: done.")
    by_css(d, "#replay-candidates")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Replay candidates: done.")
    # a new election, then a candidate in it
    by_css(d, "#election-title")[0].send_keys("2030 Test Election")
    d.execute_script("document.getElementById('election-date').value = '2030-11-05'")
    by_css(d, "#election-form button[type=submit]")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Create election: done.")
    assert any(e["title"] == "2030 Test Election" for e in
               requests.get(f"{stack.url}/election/elections?size=100").json()["_embedded"]["elections"])
    wait_for(d, lambda d: "2030 Test Election" in d.execute_script(
        "return [...document.querySelectorAll('#candidate-election option')].map(o => o.text)"),
        timeout=15, message="the new election offered for candidates")
    # the candidate service learns of the election by an event: retry until it has
    by_css(d, "#candidate-first")[0].send_keys("Ada")
    by_css(d, "#candidate-last")[0].send_keys("Lovelace")
    by_css(d, "#candidate-party")[0].send_keys("Analytical")
    from selenium.webdriver.support.ui import Select
    Select(by_css(d, "#candidate-election")[0]).select_by_visible_text("2030 Test Election")

    def created(d):
        by_css(d, "#candidate-form button[type=submit]")[0].click()
        wait_for(d, lambda d: not by_css(d, "#admin-status")[0].text.endswith("…"))
        return by_css(d, "#admin-status")[0].text == "Create candidate: done."
    wait_for(d, created, timeout=20, message="the candidate created")
    # a destructive action asks first: cancelled, nothing happens; confirmed, done
    by_css(d, "#drop-votes")[0].click()
    wait_for(d, lambda d: by_css(d, "dialog[open]"))
    screenshot(d, "admin-confirm")
    by_css(d, "dialog[open] [data-confirm=no]")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Drop all votes: not done.")
    assert requests.get(f"{stack.url}/voter/results/{enc(E2016)}/votes").json() == {"votes": 1}
    by_css(d, "#drop-votes")[0].click()
    wait_for(d, lambda d: by_css(d, "dialog[open]"))
    by_css(d, "dialog[open] [data-confirm=yes]")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Drop all votes: done.")
    assert requests.get(f"{stack.url}/voter/results/{enc(E2016)}/votes").json() == {"votes": 0}
    # simulated votes, confirmed
    Select(by_css(d, "#simulate-election")[0]).select_by_visible_text(E2016)
    by_css(d, "#simulate")[0].click()
    wait_for(d, lambda d: by_css(d, "dialog[open]"))
    by_css(d, "dialog[open] [data-confirm=yes]")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Simulation: done.")
    assert requests.get(f"{stack.url}/voter/results/{enc(E2016)}/votes").json()["votes"] >= 3 * 6
    # editing an election
    Select(by_css(d, "#election-pick")[0]).select_by_visible_text(E2016)
    wait_for(d, lambda d: by_css(d, "#election-title")[0].get_attribute("value") == E2016)
    desc = by_css(d, "#election-description")[0]
    desc.clear()
    desc.send_keys("edited in the browser")
    by_css(d, "#election-form button[type=submit]")[0].click()
    wait_for(d, lambda d: by_css(d, "#admin-status")[0].text == "Save election: done.")
    edited = [e for e in requests.get(f"{stack.url}/election/elections?size=100").json()["_embedded"]["elections"]
              if e["title"] == E2016]
    assert edited[0]["description"] == "edited in the browser"
    screenshot(d, "admin-desktop")
    # the refusals themselves
    assert console_errors(d, allow=("/election/events/replay", "/voter/drop/votes")) == []


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_every_page_works_on_a_phone(stack, browser, dark):
    assert vote(stack.url, TRUMP).status_code == 201
    d = browser(PHONE, dark)
    mode = "dark" if dark else "light"
    assert d.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches") == dark
    for name, path, ready in (("elections", "/#/", "table.elections tbody tr"),
                              ("election", f"/#/election/{enc(E2016)}", ".candidate"),
                              ("tabulate", "/#/tabulate", "#tabulate"),
                              ("admin", "/#/admin", "#simulate-election option")):
        d.get(stack.url + path)
        wait_for(d, lambda d: by_css(d, ready), message=name)
        assert d.execute_script("return innerWidth") == PHONE[0]
        assert no_horizontal_scroll(d), f"{name} scrolls sideways at {PHONE[0]} px"
        low = d.execute_script(CONTRAST_JS)
        assert low == [], f"{name} ({mode}): text below WCAG AA contrast: {low[:5]}"
        screenshot(d, f"{name}-phone-{mode}")
    assert console_errors(d) == []


def test_the_pages_work_with_the_keyboard_alone(stack, browser):
    from selenium.webdriver.common.keys import Keys
    d = browser()
    d.get(stack.url + "/")
    wait_for(d, lambda d: by_css(d, "table.elections tbody tr"))
    active = lambda: d.switch_to.active_element
    active().send_keys(Keys.TAB)  # the skip link comes first
    assert active().text == "Skip to content"
    # tab to the 2016 election's link and follow it with Enter
    for _ in range(30):
        active().send_keys(Keys.TAB)
        if active().text == E2016:
            break
    assert active().text == E2016
    active().send_keys(Keys.ENTER)
    wait_for(d, lambda d: by_css(d, ".candidate"))
    for _ in range(40):
        active().send_keys(Keys.TAB)
        if (active().get_attribute("aria-label") or "") == f"Vote for {TRUMP}":
            break
    assert active().get_attribute("aria-label") == f"Vote for {TRUMP}"
    active().send_keys(Keys.ENTER)
    wait_for(d, lambda d: votes_shown(d, TRUMP) == 1)
    outline = d.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    assert console_errors(d) == []


# Every element with its own text: the contrast ratio of its colour on the background
# behind it (the first ancestor with an opaque background), WCAG 2 formula.
CONTRAST_JS = r"""
const parse = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const bg = (el) => { for (; el; el = el.parentElement) { const c = parse(getComputedStyle(el).backgroundColor);
  if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c; } return [255, 255, 255]; };
const low = [];
for (const el of document.querySelectorAll("body *")) {
  if (!el.offsetParent && el.tagName !== "BODY") continue;
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const s = getComputedStyle(el);
  if (s.visibility === "hidden" || parseFloat(s.opacity) < 1) continue;
  const a = lum(parse(s.color)), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) low.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
}
return low;
"""
