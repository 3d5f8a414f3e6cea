// election — one election: its candidates with a vote button each, the results as bars
// (counts and shares, winners highlighted, total), kept live by the results stream.
import { ApiError, candidates, elections, enc, newIdempotencyKey, results, vote } from "./api.js";
import { barChart, update } from "./chart.js";
import { h, fmtDate, setStatus } from "./dom.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function render(main, title) {
  const info = h("p", { class: "muted" });
  const status = h("p", { class: "status", role: "status" }, "Loading…");
  const live = h("p", { class: "live", "aria-live": "off" }, "Live updates: connecting…");
  const total = h("p", { class: "total", "aria-live": "polite" });
  const winners = h("p", { class: "winner-line", "aria-live": "polite" });
  const chart = barChart([], { caption: "Votes per candidate; the share is of all votes in this election." });
  const list = h("ul", { class: "candidates" });
  main.append(h("p", {}, h("a", { href: "#/" }, "← All elections")), h("h1", {}, title), info, status,
    h("section", { "aria-labelledby": "results-h" }, h("h2", { id: "results-h" }, "Results"), total, winners,
      chart, live),
    h("section", { "aria-labelledby": "cand-h" }, h("h2", { id: "cand-h" }, "Candidates"), list));

  let people = [];
  let tallies = [];
  const draw = () => {
    const counts = new Map(tallies.map((r) => [r.candidate, r.votes]));
    const names = new Set([...people.map((c) => c.fullName), ...counts.keys()]);
    const sum = [...counts.values()].reduce((a, b) => a + b, 0);
    const max = Math.max(0, ...counts.values());
    const rows = [...names].map((n) => ({ label: n, value: counts.get(n) || 0 }))
      .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label))
      .map((r) => {
        const win = max > 0 && r.value === max;
        const share = sum ? ((r.value / sum) * 100).toFixed(1) : "0.0";
        return { ...r, kind: win ? "win" : "", badge: win ? "Winner" : "",
          text: `${r.value} vote${r.value === 1 ? "" : "s"} · ${share}%` };
      });
    update(chart, rows, { max: Math.max(1, max) });
    total.textContent = `Total votes: ${sum}`;
    const w = rows.filter((r) => r.kind === "win").map((r) => r.label);
    winners.textContent = w.length ? `${w.length > 1 ? "Tied winners" : "Winner"}: ${w.join(", ")}` : "No votes yet.";
    for (const li of list.children) li.classList.toggle("winner", w.includes(li.dataset.name));
  };

  const castVote = async (e, btn, out, name) => {
    // the second click of a double click (detail 2) is not a second intent; the button is
    // marked busy rather than disabled, so keyboard focus stays on it
    if (btn.getAttribute("aria-disabled") === "true" || (e && e.detail > 1)) return;
    btn.setAttribute("aria-disabled", "true");
    const key = newIdempotencyKey(); // one per intended vote, reused by the retries below
    setStatus(out, "Sending…");
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        await vote(name, title, key);
        setStatus(out, "Counted ✓", "ok");
        break;
      } catch (err) {
        if (err instanceof ApiError && err.status === 429) {
          setStatus(out, `Rate-limited: try again in ${err.retryAfter || 1} s`, "warn");
          break;
        }
        if (err instanceof ApiError && err.status < 500) {
          setStatus(out, `Refused: ${err.message}`, "bad");
          break;
        }
        if (attempt === 3) {
          setStatus(out, `Not sent: ${err.message}`, "bad");
          break;
        }
        await sleep(400 * attempt); // same key: the API counts it once if it got there
      }
    }
    await sleep(Math.max(0, 600 - (Date.now() - started)));
    btn.removeAttribute("aria-disabled");
  };

  elections().then((all) => {
    const e = all.find((x) => x.title === title);
    if (e) info.textContent = [fmtDate(e.date), e.electionType, e.description].filter(Boolean).join(" · ");
  }).catch(() => {});

  Promise.all([candidates(title), results(title)]).then(([cs, r]) => {
    people = cs.sort((a, b) => a.lastName.localeCompare(b.lastName) || a.firstName.localeCompare(b.firstName));
    tallies = r.results || [];
    setStatus(status, people.length ? "" : "This election has no candidates yet.");
    list.replaceChildren(...people.map((c) => {
      const out = h("p", { class: "status", role: "status" });
      const btn = h("button", { type: "button", "aria-label": `Vote for ${c.fullName}` }, "Vote");
      btn.addEventListener("click", (ev) => castVote(ev, btn, out, c.fullName));
      return h("li", { class: "candidate", dataset: { name: c.fullName } },
        h("div", {}, h("div", { class: "who" }, c.fullName),
          h("div", { class: "meta" }, [c.politicalParty, c.homeState].filter(Boolean).join(" · "))),
        h("div", { class: "vote" }, btn, out));
    }));
    draw();
  }).catch((err) => setStatus(status, `Could not load this election: ${err.message}`, "bad"));

  // Live results: one event per change of the tallies. The browser reconnects by itself
  // after a dropped connection (sending Last-Event-ID); an error answer (the voter service
  // restarting behind the gateway) ends an EventSource for good, so a new one is opened
  // after a second, naming the last state it has (lastEventId) to skip a repeat.
  let es = null;
  let lastId = "";
  let timer = null;
  let gone = false;
  let delay = 1000; // doubles up to 30 s while the stream is refused (e.g. 429: too many tabs)
  const connect = () => {
    const q = lastId ? `?lastEventId=${enc(lastId)}` : "";
    es = new EventSource(`/voter/results/${enc(title)}/stream${q}`);
    es.addEventListener("open", () => { live.textContent = "Live updates: on"; delay = 1000; });
    es.addEventListener("error", () => {
      live.textContent = "Live updates: reconnecting…";
      if (es.readyState === EventSource.CLOSED && !gone) {
        timer = setTimeout(connect, delay);
        delay = Math.min(30000, delay * 2);
      }
    });
    es.addEventListener("results", (ev) => {
      live.textContent = "Live updates: on";
      lastId = ev.lastEventId;
      tallies = JSON.parse(ev.data).results || [];
      draw();
    });
  };
  connect();
  return () => { gone = true; clearTimeout(timer); es.close(); };
}
