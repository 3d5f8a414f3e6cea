// elections — the list of elections (title, date, type) with a search by title.
import { elections } from "./api.js";
import { h, fmtDate, setStatus } from "./dom.js";

export function render(main) {
  const status = h("p", { class: "status", role: "status" }, "Loading…");
  const search = h("input", { type: "search", id: "search", placeholder: "Part of a title", autocomplete: "off" });
  const body = h("tbody");
  const table = h("table", { class: "elections stack" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Title"), h("th", { scope: "col" }, "Date"),
      h("th", { scope: "col" }, "Type"))), body);
  main.append(h("h1", {}, "Elections"),
    h("div", { role: "search" }, h("label", { for: "search" }, "Search by title"), search), status, table);
  let all = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = all.filter((e) => e.title.toLowerCase().includes(q));
    body.replaceChildren(...shown.map((e) => h("tr", {},
      h("td", { "data-label": "Title" }, h("a", { href: `#/election/${encodeURIComponent(e.title)}` }, e.title)),
      h("td", { "data-label": "Date" }, fmtDate(e.date)),
      h("td", { "data-label": "Type" }, e.electionType || ""))));
    setStatus(status, all.length ? `${shown.length} of ${all.length} elections` : "No elections yet.");
  };
  search.addEventListener("input", draw);
  elections().then((list) => { all = list; draw(); })
    .catch((e) => setStatus(status, `Could not load the elections: ${e.message}`, "bad"));
}
