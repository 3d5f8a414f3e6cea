// keybox — the API key field shared by the Tabulate and Admin pages. The key is kept in
// sessionStorage: this tab only, gone when it closes, never sent anywhere but this origin.
import { getKey, setKey } from "./api.js";
import { h } from "./dom.js";

export function keyBox(purpose) {
  const input = h("input", { type: "password", id: "api-key", autocomplete: "off", value: getKey(),
    "aria-describedby": "api-key-help" });
  input.addEventListener("input", () => setKey(input.value.trim()));
  // a form of its own, so the browser knows what the password field belongs to
  return h("form", { class: "panel", onsubmit: (e) => e.preventDefault() },
    h("label", { for: "api-key" }, "API key"), input,
    h("p", { id: "api-key-help", class: "muted" },
      `${purpose} The key stays in this browser tab only and is sent as X-API-Key.`));
}
