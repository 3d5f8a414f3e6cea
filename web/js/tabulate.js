// tabulate — a ranked-choice count through the job service: upload rules and ballots (or
// take the sample), follow the job, then read the count round by round.
import { ApiError, call, get, getKey } from "./api.js";
import { barChart } from "./chart.js";
import { h, setStatus } from "./dom.js";
import { compare, dec, parseExact, sum } from "./exact.js";
import { keyBox } from "./keybox.js";

const FINAL = new Set(["succeeded", "failed", "cancelled", "purged"]);

export function render(main) {
  const rulesIn = h("input", { type: "file", id: "rules-file", accept: ".json,application/json" });
  const ballotsIn = h("input", { type: "file", id: "ballots-file", accept: ".csv,text/csv" });
  const sample = h("input", { type: "checkbox", id: "use-sample" });
  const submit = h("button", { type: "submit", id: "tabulate" }, "Tabulate");
  const status = h("p", { class: "status", role: "status", id: "job-status" });
  const bar = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Progress of the count" });
  const out = h("section", { id: "count", "aria-live": "polite" });
  let running = false;
  let gone = false;

  const form = h("form", { class: "panel", novalidate: true },
    h("label", { for: "rules-file" }, "Rules (JSON)"), rulesIn,
    h("label", { for: "ballots-file" }, "Ballots (CSV)"), ballotsIn,
    h("div", { class: "row" }, sample, h("label", { for: "use-sample" }, "Use the sample instead (small-irv: 4 candidates, 23 ballots)")),
    h("div", { class: "row" }, submit), status, bar);
  main.append(h("h1", {}, "Tabulate a ranked-choice count"),
    keyBox("Submitting a count needs a key, of any tier (a free key submits one count per 5 minutes)."), form, out);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (running) return;
    running = true;
    submit.disabled = true;
    out.replaceChildren();
    try {
      await run();
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) setStatus(status, `Rate-limited: try again in ${err.retryAfter || 1} s`, "warn");
      else setStatus(status, err instanceof ApiError ? `Refused: ${err.message}` : `Failed: ${err.message}`, "bad");
    } finally {
      running = false;
      submit.disabled = false;
    }
  });

  async function files() {
    if (sample.checked) {
      const [r, b] = await Promise.all([fetch("/web/samples/small-irv.rules.json"), fetch("/web/samples/small-irv.ballots.csv")]);
      return [await r.blob(), await b.blob()];
    }
    if (!rulesIn.files[0] || !ballotsIn.files[0]) throw new Error("choose a rules file and a ballots file, or the sample");
    return [rulesIn.files[0], ballotsIn.files[0]];
  }

  async function run() {
    if (!getKey()) throw new Error("type an API key first");
    const [rules, ballots] = await files();
    const body = new FormData();
    body.append("rules", rules, "rules.json");
    body.append("ballots", ballots, "ballots.csv");
    setStatus(status, "Submitting…");
    const job = await call("POST", "/jobs/tabulations", { body, key: true });
    bar.hidden = false;
    bar.removeAttribute("value"); // indeterminate while queued
    let doc = { status: "pending" };
    while (!FINAL.has(doc.status) && !gone) {
      doc = await get(`/jobs/${encodeURIComponent(job.id)}?view=status&wait=10`, { key: true });
      showProgress(doc);
    }
    if (doc.status !== "succeeded") {
      setStatus(status, `The count ${doc.status}: ${doc.reason || ""}`, "bad");
      return;
    }
    // the text, not res.json(): its numbers may hold more digits than a double
    const res = await call("GET", doc.resultUrl, { raw: true });
    const text = await res.text();
    if (!res.ok) {
      let problem = null;
      try { problem = JSON.parse(text); } catch { /* not JSON: the status says it */ }
      throw new ApiError(res.status, problem, 0);
    }
    bar.value = 1;
    setStatus(status, "Done.", "ok");
    out.replaceChildren(...renderCount(text));
    out.querySelector("h2")?.focus();
  }

  function showProgress(doc) {
    const p = doc.progress || {};
    if (doc.status === "pending") {
      setStatus(status, "Queued…");
    } else if (doc.status === "running") {
      const part = p.total ? ` (${p.message || "working"} ${p.done}/${p.total})` : p.message ? ` (${p.message})` : "";
      setStatus(status, `Running${part}…`);
      if (p.total) { bar.max = p.total; bar.value = p.done; }
    }
  }
  return () => { gone = true; };
}

// The count, from the results file's text: the winners (with the round each was elected),
// a round selector and one section per round. Numbers are shown exactly as the file writes
// them (exact.js), so a count with 20 decimal places loses none.
export function renderCount(text) {
  const result = parseExact(text);
  const rounds = result.rounds || [];
  const winners = result.winners || [];
  const sequential = rounds.some((r) => r.pass !== undefined);
  const where = (r) => (sequential ? `pass ${r.pass}, round ${r.round}` : `round ${r.round}`);
  const electedIn = new Map(); // name → the index of the round it was elected in
  rounds.forEach((r, i) => { for (const name of r.elected || []) if (!electedIn.has(name)) electedIn.set(name, i); });
  const when = (name) => where(rounds[electedIn.get(name)]);
  const sections = rounds.map((r, i) => roundSection(r, i, { electedIn, sequential, when }));
  const slider = h("input", { type: "range", id: "round", min: 1, max: rounds.length, value: rounds.length,
    "aria-label": "Round" });
  const label = h("output", { for: "round", id: "round-label" });
  const prev = h("button", { type: "button", class: "secondary", id: "prev-round" }, "← Previous round");
  const next = h("button", { type: "button", class: "secondary", id: "next-round" }, "Next round →");
  const select = (n) => {
    n = Math.max(1, Math.min(rounds.length, n));
    slider.value = n;
    label.textContent = sequential ? `Pass ${rounds[n - 1].pass}, round ${rounds[n - 1].round} (${n} of ${rounds.length})`
      : `Round ${n} of ${rounds.length}`;
    sections.forEach((s, i) => { s.hidden = i !== n - 1; });
    prev.disabled = n === 1;
    next.disabled = n === rounds.length;
  };
  slider.addEventListener("input", () => select(Number(slider.value)));
  prev.addEventListener("click", () => select(Number(slider.value) - 1));
  next.addEventListener("click", () => select(Number(slider.value) + 1));
  select(rounds.length);
  // the file as the API gave it, not re-serialised
  const blob = new Blob([text], { type: "application/json" });
  const download = h("a", { href: URL.createObjectURL(blob), download: "result.json", class: "button", id: "download" },
    "Download the result (JSON)");
  const s = result.summary || {};
  const several = winners.length > 1 || sequential;
  return [
    h("h2", { tabindex: "-1" }, result.contest || "The count"),
    h("p", { class: "winner-line", id: "winners" }, `${winners.length > 1 ? "Winners" : "Winner"}: ${winners.join(", ")}`),
    several ? h("ol", { class: "winners", id: "winner-list" }, winners.map((name) => h("li", { "data-name": name },
      name, electedIn.has(name) ? h("span", { class: "muted" }, ` — elected in ${when(name)}`) : null)))
      : null,
    result.threshold !== undefined ? h("p", { id: "threshold" }, `Threshold: ${result.threshold} votes` +
      (sequential ? " (the last pass's)" : "")) : null,
    h("p", { class: "muted" }, `${s.ballots ?? "?"} ballots, ${s.rounds ?? rounds.length} rounds` +
      (s.undervotes !== undefined ? `, ${s.undervotes} blank` : "")),
    result.passes ? passTable(result.passes) : null,
    h("div", { class: "steps" }, prev, slider, label, next),
    ...sections,
    h("p", {}, download),
  ].filter(Boolean);
}

function passTable(passes) {
  return h("table", { id: "passes" },
    h("caption", {}, "Passes: one instant-runoff count per seat, earlier winners excluded"),
    h("thead", {}, h("tr", {}, ["Pass", "Winner", "Rounds", "Threshold"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, passes.map((p) => h("tr", {}, h("td", {}, `${p.pass}`), h("td", {}, p.winner ?? ""),
      h("td", {}, `${p.rounds ?? ""}`), h("td", {}, `${p.threshold ?? ""}`)))));
}

// One round: the chart (threshold line; an elected candidate's surplus over it drawn apart),
// the transfers — a winner's surplus apart from an eliminated candidate's ballots — the
// surplus that goes to no one (residual, final round), and the inactive ballots.
function roundSection(r, index, { electedIn, sequential, when }) {
  const elected = new Set(r.elected || []);
  const eliminated = new Set(r.eliminated || []);
  const threshold = r.threshold !== undefined ? dec(r.threshold) : null;
  const rows = Object.entries(r.tally || {}).map(([name, votes]) => [name, dec(votes)])
    .sort((a, b) => compare(b[1], a[1]) || a[0].localeCompare(b[0]))
    .map(([name, votes]) => {
      const earlier = electedIn.has(name) && electedIn.get(name) < index;
      const moved = r.transfers && r.transfers[name] !== undefined;
      return {
        label: name, value: votes.approx, text: votes.text,
        kind: elected.has(name) ? "win" : earlier ? "won" : eliminated.has(name) ? "elim" : "",
        badge: elected.has(name) ? "Elected" : earlier ? `Elected in ${when(name)}`
          : eliminated.has(name) ? "Eliminated" : "",
        // the part of this round's winner's tally over the threshold moves on (STV: the
        // winner has transfers; a single winner's majority passes nothing on)
        surplus: elected.has(name) && moved && threshold !== null && compare(votes, threshold) > 0,
      };
    });
  const anySurplus = rows.some((row) => row.surplus);
  const chart = barChart(rows, { threshold: threshold ? threshold.approx : 0,
    caption: `Votes per candidate; the dashed line is the threshold (${r.threshold})` +
      (anySurplus ? "; the hatched part of an elected candidate's bar is its surplus, passed on next round." : ".") });
  const amount = (k, v) => `${dec(v)} to ${k === "exhausted" ? "no one (exhausted)" : k}`;
  const surplusItems = [], eliminationItems = [], otherItems = [], residuals = [];
  for (const [from, to] of Object.entries(r.transfers || {})) {
    const moves = Object.entries(to).filter(([k]) => k !== "residual_surplus").map(([k, v]) => amount(k, v));
    const residual = to.residual_surplus;
    if (residual !== undefined) residuals.push([from, dec(residual)]);
    if (elected.has(from)) {
      surplusItems.push(h("li", { "data-from": from, class: "surplus" },
        `${from}'s surplus: ${moves.join(", ") || "nothing moved"}` +
        (residual !== undefined ? `; residual surplus ${dec(residual)} (to no one)` : "")));
    } else {
      (eliminated.has(from) ? eliminationItems : otherItems).push(h("li", { "data-from": from },
        `${from}'s ballots: ${moves.join(", ") || "none"}`));
    }
  }
  const inactive = Object.entries(r.inactive || {}).filter(([k]) => k !== "final_round_surplus");
  const finalSurplus = r.inactive && r.inactive.final_round_surplus;
  const surplusRows = residuals.map(([from, v]) => h("tr", { "data-kind": "residual", "data-from": from },
    h("th", { scope: "row" }, `residual surplus of ${from}`), h("td", {}, v.text)));
  if (residuals.length > 1) {
    surplusRows.push(h("tr", { "data-kind": "residual-total" }, h("th", { scope: "row" }, "residual surplus, all"),
      h("td", {}, sum(residuals.map(([, v]) => v)).text)));
  }
  if (finalSurplus !== undefined) {
    surplusRows.push(h("tr", { "data-kind": "final" }, h("th", { scope: "row" }, "final round surplus"),
      h("td", {}, `${dec(finalSurplus)}`)));
  }
  const list = (title, cls, items) => (items.length
    ? h("div", {}, h("h4", {}, title), h("ul", { class: `plain transfers ${cls}` }, items)) : null);
  const heading = sequential ? `Pass ${r.pass}, round ${r.round}` : `Round ${r.round}`;
  return h("section", { class: "round panel", "data-round": `${r.round}`, "data-pass": sequential ? `${r.pass}` : null,
    "aria-label": heading },
    h("h3", {}, heading), chart,
    list("Surplus transfers (of candidates elected this round)", "surplus", surplusItems),
    list(surplusItems.length ? "Transfers of eliminated candidates' ballots" : "Transfers", "elimination", eliminationItems),
    list("Other transfers", "other", otherItems),
    surplusRows.length ? h("div", {}, h("h4", {}, "Surplus that goes to no one"),
      h("p", { class: "muted" }, "Residual surplus: the part of a winner's surplus lost to truncation. " +
        "Final round surplus: the last winners' surplus, set aside because no one is left to receive it."),
      h("table", { class: "surplus" }, h("tbody", {}, surplusRows))) : null,
    inactive.length ? h("div", {}, h("h4", {}, "Inactive ballots"),
      h("table", {}, h("tbody", {}, inactive.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k.replace(/_/g, " ")), h("td", {}, `${dec(v)}`)))))) : null);
}
