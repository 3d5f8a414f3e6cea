// chart — horizontal bar charts as SVG, one row per item: label, bar (a track and a
// fill, optionally a threshold line, and for a row marked surplus the part beyond the
// threshold hatched) and the value as text, so the numbers are readable without the
// picture and the picture scales with the page (widths are percentages).

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

const pct = (v, max) => (max > 0 ? Math.max(0, Math.min(100, (v / max) * 100)) : 0);
let charts = 0; // for ids unique in the page (the hatch pattern of each chart)

// rows: [{label, value, text, kind: "win"|"won"|"elim"|"", badge, surplus}]; options:
// {max, threshold, caption}. value is for geometry only; text is what is shown. A row with
// surplus (and a threshold) draws its bar up to the threshold plain and the rest hatched.
// Returns a <figure>. Rows keep their key (label) so update() can move bars.
export function barChart(rows, { max, threshold, caption } = {}) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.dataset.hatch = `hatch-${++charts}`;
  fig.append(hatch(fig.dataset.hatch));
  if (caption) {
    const cap = document.createElement("figcaption");
    cap.className = "legend";
    cap.textContent = caption;
    fig.append(cap);
  }
  update(fig, rows, { max, threshold });
  return fig;
}

export function update(fig, rows, { max, threshold } = {}) {
  // a threshold line gets some room to its right, so it is not lost at the edge
  const top = max ?? Math.max(1, ...rows.map((r) => r.value), (threshold || 0) * 1.15);
  const existing = new Map([...fig.querySelectorAll(".crow")].map((el) => [el.dataset.key, el]));
  const keep = new Set();
  let prev = fig.querySelector("figcaption");
  for (const r of rows) {
    let row = existing.get(r.label);
    if (!row) row = makeRow(r.label);
    keep.add(r.label);
    const fill = row.querySelector(".fill");
    const over = row.querySelector(".surplus");
    const split = r.surplus && threshold && r.value > threshold;
    fill.setAttribute("width", `${pct(split ? threshold : r.value, top)}%`);
    fill.setAttribute("class", `fill ${r.kind || ""}`.trim());
    if (split) {
      over.setAttribute("x", `${pct(threshold, top)}%`);
      over.setAttribute("width", `${pct(r.value, top) - pct(threshold, top)}%`);
      over.setAttribute("fill", `url(#${fig.dataset.hatch})`);
      over.removeAttribute("visibility");
    } else {
      over.setAttribute("visibility", "hidden");
    }
    const line = row.querySelector(".threshold");
    if (threshold) {
      const x = `${pct(threshold, top)}%`;
      line.setAttribute("x1", x);
      line.setAttribute("x2", x);
      line.removeAttribute("visibility");
    } else {
      line.setAttribute("visibility", "hidden");
    }
    const label = row.querySelector(".clabel");
    label.textContent = r.label;
    if (r.badge) {
      const b = document.createElement("span");
      b.className = `badge ${r.kind || ""}`;
      b.textContent = r.badge;
      label.append(b);
    }
    row.querySelector(".cvalue").textContent = r.text ?? String(r.value);
    row.querySelector("svg").setAttribute("aria-label", `${r.label}: ${r.text ?? r.value}`);
    if (prev) prev.after(row);
    else fig.prepend(row);
    prev = row;
  }
  for (const [k, el] of existing) if (!keep.has(k)) el.remove();
}

// Diagonal stripes in the winners' colour (app.css colours them), one pattern per chart in
// a picture of no size of its own, used by every row of the chart.
function hatch(id) {
  const holder = svg("svg", { class: "defs", width: 0, height: 0, "aria-hidden": "true", focusable: "false" });
  const defs = svg("defs", {});
  const p = svg("pattern", { id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  p.append(svg("rect", { class: "hatch-bg", width: 6, height: 6 }));
  p.append(svg("line", { class: "hatch-line", x1: 0, y1: 0, x2: 0, y2: 6 }));
  defs.append(p);
  holder.append(defs);
  return holder;
}

function makeRow(key) {
  const row = document.createElement("div");
  row.className = "crow";
  row.dataset.key = key;
  const label = document.createElement("div");
  label.className = "clabel";
  const s = svg("svg", { role: "img", preserveAspectRatio: "none" });
  s.append(svg("rect", { class: "track", x: 0, y: 2, width: "100%", height: "80%", rx: 2 }));
  s.append(svg("rect", { class: "fill", x: 0, y: 2, width: "0%", height: "80%", rx: 2 }));
  s.append(svg("rect", { class: "surplus", x: 0, y: 2, width: "0%", height: "80%", visibility: "hidden" }));
  s.append(svg("line", { class: "threshold", x1: "0%", x2: "0%", y1: 0, y2: "100%", visibility: "hidden" }));
  const value = document.createElement("div");
  value.className = "cvalue";
  row.append(label, s, value);
  return row;
}
