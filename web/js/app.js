// app — the shell: hash routes to pages, the current page's clean-up (open event
// streams) on leaving it, focus moved to the new page's heading for keyboard and
// screen-reader users.
import * as electionsPage from "./elections.js";
import * as electionPage from "./election.js";
import * as tabulatePage from "./tabulate.js";
import * as adminPage from "./admin.js";

const main = document.getElementById("main");
let leave = null;

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  if (hash.startsWith("/election/")) return [electionPage, hash.slice(10), "elections"];
  if (hash === "/tabulate") return [tabulatePage, null, "tabulate"];
  if (hash === "/admin") return [adminPage, null, "admin"];
  return [electionsPage, null, "elections"];
}

async function show() {
  if (leave) leave();
  leave = null;
  const [page, param, nav] = route();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  leave = page.render(main, param) || null;
  const h1 = main.querySelector("h1");
  if (h1) {
    document.title = `${h1.textContent} · Voter`;
    if (document.activeElement && document.activeElement !== document.body) main.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", show);
show();
