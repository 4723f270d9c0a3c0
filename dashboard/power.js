// wlm dashboard: the power view. Per-node power against its budget over time
// (solid: power, dashed: budget) and energy per workload, from GET
// /v1/energy. Uses $, el, getJSON, fmtTime and palette from app.js.
"use strict";

const POWER_HISTORY = 180; // samples per node (one per heartbeat)

function fmtWh(j) { return j >= 3.6e6 ? (j / 3.6e6).toFixed(2) + " kWh" : (j / 3600).toFixed(3) + " Wh"; }

function drawPower(nodes) {
  const svg = $("power-chart");
  const W = 900, H = 220, L = 44, R = 10, T = 10, B = 22;
  svg.replaceChildren();
  let t0 = Infinity, t1 = -Infinity, hi = 0;
  for (const n of nodes) for (const [t, w, b] of n.history) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t);
    hi = Math.max(hi, w, b, n.max_w || 0);
  }
  if (!isFinite(t0)) { svg.appendChild(el("text", { x: W / 2 - 60, y: H / 2 }, "waiting for data…")); return; }
  if (t1 - t0 < 10) t0 = t1 - 10;
  hi = Math.ceil(hi / 50) * 50 || 50;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = w => T + (hi - w) / hi * (H - T - B);
  svg.appendChild(el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.appendChild(el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (const v of [0, hi / 2, hi]) svg.appendChild(el("text", { x: 2, y: y(v) + 3 }, v.toFixed(0) + " W"));
  svg.appendChild(el("text", { x: L, y: H - 6 }, fmtTime(t0)));
  svg.appendChild(el("text", { x: W - R - 70, y: H - 6 }, fmtTime(t1)));
  const legend = $("power-legend");
  legend.replaceChildren();
  nodes.forEach((n, i) => {
    const color = palette[i % palette.length];
    const pw = n.history.map(([t, w]) => x(t).toFixed(1) + "," + y(w).toFixed(1)).join(" ");
    svg.appendChild(el("polyline", { class: "power-line", points: pw, stroke: color, "data-node": n.name }));
    // The budget, where there is one (0 = none breaks the line).
    let seg = [];
    const flush = () => {
      if (seg.length > 1) svg.appendChild(el("polyline", { class: "budget-line", points: seg.join(" "), stroke: color, "data-node": n.name }));
      seg = [];
    };
    for (const [t, , b] of n.history) { if (b > 0) seg.push(x(t).toFixed(1) + "," + y(b).toFixed(1)); else flush(); }
    flush();
    const item = el("span", { class: "legend-item" });
    item.appendChild(el("span", { class: "swatch", style: "background:" + color }));
    const over = n.budget_w > 0 && n.watts > n.budget_w * 1.02;
    item.appendChild(document.createTextNode(n.name + " " + n.watts.toFixed(0) + " W" +
      (n.budget_w > 0 ? " / " + n.budget_w.toFixed(0) + " W" : "") + (n.flagged ? " FLAGGED" : over ? " over" : "")));
    legend.appendChild(item);
  });
}

function renderEnergy(e) {
  const tb = $("energy").querySelector("tbody");
  tb.replaceChildren();
  const rows = [];
  for (const j of e.jobs) rows.push({ ...j, kind: "job", name: "job-" + j.name });
  for (const a of e.apps) rows.push({ ...a, kind: "app" });
  rows.sort((a, b) => b.energy_j - a.energy_j);
  for (const r of rows.slice(0, 20)) {
    const tr = el("tr");
    tr.appendChild(el("td", {}, r.kind));
    tr.appendChild(el("td", {}, r.name));
    tr.appendChild(el("td", { class: "num" }, fmtWh(r.energy_j)));
    tr.appendChild(el("td", { class: "num" }, r.mean_power_w === null ? "–" : r.mean_power_w.toFixed(1)));
    tr.appendChild(el("td", {}, r.node || "–"));
    tb.appendChild(tr);
  }
  if (!rows.length) {
    const tr = el("tr");
    tr.appendChild(el("td", { colspan: 5, class: "muted" }, "no energy attributed yet"));
    tb.appendChild(tr);
  }
  const meta = $("power-meta");
  const share = e.energy_j > 0 ? (100 * e.attributed_j / e.energy_j).toFixed(1) + " % attributed to workloads" : "";
  meta.textContent = "cluster budget: " + (e.cluster_budget_w > 0 ? e.cluster_budget_w.toFixed(0) + " W" : "none") +
    " · energy " + fmtWh(e.energy_j) + (share ? " · " + share : "");
}

async function refreshPower() {
  try {
    const e = await getJSON("/v1/energy?history=" + POWER_HISTORY);
    if (!e) return;
    drawPower(e.nodes);
    renderEnergy(e);
  } catch (err) {
    showError(String(err.message || err));
  }
}
refreshPower();
setInterval(refreshPower, 5000);
