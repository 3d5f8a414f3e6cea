// admin — elections and candidates (create, edit), drops, replays and simulated votes.
// Every call sends the tab's key; the gateway decides what the key may do (its tier's
// scopes: "write" for elections and candidates, "admin" for the operations) and a refusal
// says which scope was missing. Destructive actions ask first.
import { ApiError, call, elections, enc, get, getKey } from "./api.js";
import { confirmDialog, h, fmtDate, setStatus } from "./dom.js";
import { keyBox } from "./keybox.js";

const TYPES = ["FEDERAL", "STATE", "LOCAL", "OTHER"];
const WRITE = { scope: "write" }; // what elections and candidates need (the rest: admin)

// Why a call was refused, in words: 401 (no key, or one the gateway does not know) and 403
// (a key whose tier lacks the scope) from the gateway, or 403 from a service that did not
// accept the gateway's proof (its detail starts "this is an admin operation").
function refusal(err, scope) {
  const detail = err.message;
  if (err.status === 401) {
    const why = getKey() ? "the gateway does not know this key" : "no key was given";
    return `refused (401) — this needs a key with the ${scope} scope; ${why} (${detail}).`;
  }
  if (/^this is an admin operation/.test((err.problem && err.problem.detail) || "")) {
    return `refused (403) by the service — the gateway's proof was missing or not accepted, ` +
      `whatever the key (${detail}).`;
  }
  return `refused (403) — this key lacks the ${scope} scope; ask for a key whose tier has it (${detail}).`;
}

function field(id, label, input) {
  input.id = id;
  return [h("label", { for: id }, label), input];
}

export function render(main) {
  const status = h("p", { class: "status", role: "status", id: "admin-status" });
  let electionList = [];
  let candidateList = [];

  const act = async (what, fn, { confirm, scope = "admin" } = {}) => {
    if (confirm && !(await confirmDialog(confirm, what))) {
      setStatus(status, `${what}: not done.`);
      return;
    }
    setStatus(status, `${what}…`);
    try {
      await fn();
      setStatus(status, `${what}: done.`, "ok");
      refresh();
    } catch (err) {
      const why = err instanceof ApiError && (err.status === 401 || err.status === 403)
        ? refusal(err, scope) : `failed — ${err.message}`;
      setStatus(status, `${what}: ${why}`, "bad");
    }
  };

  // elections
  const eSel = h("select", {}, h("option", { value: "" }, "(a new election)"));
  const eTitle = h("input", { type: "text", required: true });
  const eDate = h("input", { type: "date", required: true });
  const eType = h("select", {}, TYPES.map((t) => h("option", { value: t }, t)));
  const eDesc = h("input", { type: "text" });
  eSel.addEventListener("change", () => {
    const e = electionList.find((x) => x.id === eSel.value);
    eTitle.value = e ? e.title : "";
    eDate.value = e ? fmtDate(e.date) : "";
    eType.value = e && TYPES.includes(String(e.electionType).toUpperCase()) ? String(e.electionType).toUpperCase() : "FEDERAL";
    eDesc.value = e ? e.description || "" : "";
  });
  const eForm = h("form", { class: "panel", id: "election-form" },
    h("h2", {}, "Election"), ...field("election-pick", "Edit", eSel), ...field("election-title", "Title", eTitle),
    ...field("election-date", "Date", eDate), ...field("election-type", "Type", eType),
    ...field("election-description", "Description", eDesc),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save election")));
  eForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { title: eTitle.value.trim(), date: eDate.value, electionType: eType.value, description: eDesc.value };
    if (eSel.value) act("Save election", () => call("PATCH", `/election/elections/${enc(eSel.value)}`, { body, key: true }), WRITE);
    else act("Create election", () => call("POST", "/election/elections", { body, key: true }), WRITE);
  });

  // candidates
  const cSel = h("select", {}, h("option", { value: "" }, "(a new candidate)"));
  const cFirst = h("input", { type: "text", required: true });
  const cLast = h("input", { type: "text", required: true });
  const cParty = h("input", { type: "text" });
  const cElection = h("select", {});
  const cState = h("input", { type: "text" });
  cSel.addEventListener("change", () => {
    const c = candidateList.find((x) => x.id === cSel.value);
    cFirst.value = c ? c.firstName : "";
    cLast.value = c ? c.lastName : "";
    cParty.value = c ? c.politicalParty || "" : "";
    cState.value = c ? c.homeState || "" : "";
    if (c) cElection.value = c.election;
  });
  const cForm = h("form", { class: "panel", id: "candidate-form" },
    h("h2", {}, "Candidate"), ...field("candidate-pick", "Edit", cSel),
    ...field("candidate-first", "First name", cFirst), ...field("candidate-last", "Last name", cLast),
    ...field("candidate-party", "Political party", cParty), ...field("candidate-election", "Election", cElection),
    ...field("candidate-state", "Home state", cState),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save candidate")));
  cForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { firstName: cFirst.value.trim(), lastName: cLast.value.trim(), politicalParty: cParty.value,
      election: cElection.value, homeState: cState.value };
    if (cSel.value) act("Save candidate", () => call("PATCH", `/candidate/candidates/${enc(cSel.value)}`, { body, key: true }), WRITE);
    else act("Create candidate", () => call("POST", "/candidate/candidates", { body, key: true }), WRITE);
  });

  // simulation, replays, drops
  const sSel = h("select", { id: "simulate-election" });
  const button = (id, text, cls, onclick) => h("button", { type: "button", id, class: cls, onclick }, text);
  const post = (path) => () => call("POST", path, { key: true });
  const ops = h("div", { class: "panel" }, h("h2", {}, "Operations"),
    h("label", { for: "simulate-election" }, "Simulate votes in"), sSel,
    h("div", { class: "row" }, button("simulate", "Add simulated votes", "", () =>
      act("Simulation", post(`/voter/simulation/${enc(sSel.value)}`),
        { confirm: `Add random votes to every candidate of “${sSel.value}”? They count like real votes.` }))),
    h("h3", {}, "Replays"),
    h("p", { class: "muted" }, "Ask a service to publish all of its records again, so the other services rebuild their copies."),
    h("div", { class: "row" },
      button("replay-elections", "Replay elections", "secondary", () => act("Replay elections", post("/election/events/replay"))),
      button("replay-candidates", "Replay candidates", "secondary", () => act("Replay candidates", post("/candidate/events/replay")))),
    h("h3", {}, "Drops"),
    h("div", { class: "row" },
      button("drop-votes", "Drop all votes", "danger", () => act("Drop all votes", post("/voter/drop/votes"),
        { confirm: "Delete every vote of every election? This cannot be undone." })),
      button("drop-candidates", "Drop all candidates", "danger", () => act("Drop all candidates", post("/candidate/drop/candidates"),
        { confirm: "Delete every candidate? This cannot be undone." })),
      button("drop-elections", "Drop all elections", "danger", () => act("Drop all elections", post("/election/drop/elections"),
        { confirm: "Delete every election? This cannot be undone." }))));

  main.append(h("h1", {}, "Administration"),
    keyBox("Creating and editing elections and candidates needs a key with the write scope (paid or admin); " +
      "simulated votes, replays and drops need the admin scope."), status,
    eForm, cForm, ops);

  async function refresh() {
    try {
      electionList = await elections();
      const d = await get("/candidate/candidates?size=500");
      candidateList = (d._embedded && d._embedded.candidates) || [];
    } catch (err) {
      setStatus(status, `Could not load the current data: ${err.message}`, "bad");
      return;
    }
    const keepE = eSel.value, keepC = cSel.value, keepS = sSel.value, keepCE = cElection.value;
    eSel.replaceChildren(h("option", { value: "" }, "(a new election)"),
      ...electionList.map((e) => h("option", { value: e.id }, e.title)));
    cSel.replaceChildren(h("option", { value: "" }, "(a new candidate)"),
      ...candidateList.map((c) => h("option", { value: c.id }, `${c.fullName} — ${c.election}`)));
    const titles = electionList.map((e) => h("option", { value: e.title }, e.title));
    cElection.replaceChildren(...titles);
    sSel.replaceChildren(...electionList.map((e) => h("option", { value: e.title }, e.title)));
    eSel.value = keepE; cSel.value = keepC;
    if (keepS) sSel.value = keepS;
    if (keepCE) cElection.value = keepCE;
  }
  refresh();
}
