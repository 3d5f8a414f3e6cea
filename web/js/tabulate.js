// tabulate — a ranked-choice count through the job service: upload rules and ballots (or
// take the sample), follow the job, then read the count round by round.
import { ApiError, call, get, getKey } from "./api.js";
import { barChart } from "./chart.js";
import { h, setStatus } from "./dom.js";
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
    keyBox("Submitting a count needs a key."), form, out);

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
    const result = await get(doc.resultUrl);
    bar.value = 1;
    setStatus(status, "Done.", "ok");
    out.replaceChildren(...renderCount(result));
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

// The count: the winner, a round selector and one chart per round.
export function renderCount(result) {
  const rounds = result.rounds || [];
  const winners = result.winners || [];
  const sections = rounds.map((r) => roundSection(r));
  const slider = h("input", { type: "range", id: "round", min: 1, max: rounds.length, value: rounds.length,
    "aria-label": "Round" });
  const label = h("output", { for: "round", id: "round-label" });
  const prev = h("button", { type: "button", class: "secondary", id: "prev-round" }, "← Previous round");
  const next = h("button", { type: "button", class: "secondary", id: "next-round" }, "Next round →");
  const select = (n) => {
    n = Math.max(1, Math.min(rounds.length, n));
    slider.value = n;
    label.textContent = `Round ${n} of ${rounds.length}`;
    sections.forEach((s, i) => { s.hidden = i !== n - 1; });
    prev.disabled = n === 1;
    next.disabled = n === rounds.length;
  };
  slider.addEventListener("input", () => select(Number(slider.value)));
  prev.addEventListener("click", () => select(Number(slider.value) - 1));
  next.addEventListener("click", () => select(Number(slider.value) + 1));
  select(rounds.length);
  const blob = new Blob([JSON.stringify(result, null, 1)], { type: "application/json" });
  const download = h("a", { href: URL.createObjectURL(blob), download: "result.json", class: "button", id: "download" },
    "Download the result (JSON)");
  const s = result.summary || {};
  return [
    h("h2", { tabindex: "-1" }, result.contest || "The count"),
    h("p", { class: "winner-line", id: "winners" }, `${winners.length > 1 ? "Winners" : "Winner"}: ${winners.join(", ")}`),
    h("p", { class: "muted" }, `${s.ballots ?? "?"} ballots, ${s.rounds ?? rounds.length} rounds` +
      (s.undervotes !== undefined ? `, ${s.undervotes} blank` : "")),
    h("div", { class: "steps" }, prev, slider, label, next),
    ...sections,
    h("p", {}, download),
  ];
}

function roundSection(r) {
  const elected = new Set(r.elected || []);
  const eliminated = new Set(r.eliminated || []);
  const rows = Object.entries(r.tally || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([name, votes]) => ({
      label: name, value: Number(votes), text: `${votes}`,
      kind: elected.has(name) ? "win" : eliminated.has(name) ? "elim" : "",
      badge: elected.has(name) ? "Elected" : eliminated.has(name) ? "Eliminated" : "",
    }));
  const chart = barChart(rows, { threshold: Number(r.threshold) || 0,
    caption: `Votes per continuing candidate; the dashed line is the threshold (${r.threshold}).` });
  const transfers = Object.entries(r.transfers || {}).map(([from, to]) => {
    const parts = Object.entries(to).map(([k, v]) => `${v} to ${k === "exhausted" ? "no one (exhausted)" : k}`);
    return h("li", {}, `${from}'s ballots: ${parts.join(", ") || "none"}`);
  });
  const inactive = Object.entries(r.inactive || {});
  return h("section", { class: "round panel", "data-round": r.round, "aria-label": `Round ${r.round}` },
    h("h3", {}, `Round ${r.round}`), chart,
    transfers.length ? h("div", {}, h("h4", {}, "Transfers"), h("ul", { class: "plain transfers" }, transfers)) : null,
    inactive.length ? h("div", {}, h("h4", {}, "Inactive ballots"),
      h("table", {}, h("tbody", {}, inactive.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k.replace(/_/g, " ")), h("td", {}, String(v))))))) : null);
}
