// dom — small helpers to build elements without HTML strings (nothing the API returns is
// ever parsed as markup).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function setStatus(el, text, kind = "") {
  el.textContent = text;
  el.className = `status ${kind}`.trim();
}

// A modal confirmation (<dialog>): resolves true only on the confirm button.
export function confirmDialog(question, confirmLabel = "Confirm") {
  return new Promise((resolve) => {
    const yes = h("button", { type: "button", class: "danger", "data-confirm": "yes" }, confirmLabel);
    const no = h("button", { type: "button", class: "secondary", "data-confirm": "no" }, "Cancel");
    const dlg = h("dialog", { "aria-labelledby": "confirm-q" }, h("p", { id: "confirm-q" }, question),
      h("div", { class: "row" }, no, yes));
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
    no.focus();
  });
}

export const fmtDate = (d) => (d ? String(d).slice(0, 10) : "");
