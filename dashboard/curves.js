// wlm dashboard: the utility functions the placement controller works on now,
// one small chart per workload (utility vs CPU MHz, piecewise linear) with a
// marker where the workload runs, so an operator sees why it decided so.
// Input: GET /v1/placement/snapshot (docs/snapshot.md). Uses el() and
// fmtUtil()/utilClass() from app.js (loaded after this file, called later).
"use strict";

const CURVES_MAX = 24;          // charts drawn; the rest are counted
const CW = 240, CH = 124;       // chart viewBox
const CL = 33, CR = 8, CT = 8, CB = 20;
let curveSeq = 0;               // unique clipPath ids across redraws

// A curve as [[cpu_mhz, utility], ...] sorted by CPU. The snapshot gives
// pairs; {cpu_mhz:[...], util:[...]} is accepted too.
function parseCurve(u) {
  let pts = [];
  if (Array.isArray(u)) pts = u.filter(p => Array.isArray(p) && p.length >= 2).map(p => [+p[0], +p[1]]);
  else if (u && Array.isArray(u.cpu_mhz) && Array.isArray(u.util))
    pts = u.cpu_mhz.map((x, i) => [+x, +u.util[i]]);
  return pts.filter(p => isFinite(p[0]) && isFinite(p[1])).sort((a, b) => a[0] - b[0]);
}

// Flat before the first point and after the last (docs/snapshot.md).
function evalCurve(pts, x) {
  if (!pts.length) return NaN;
  if (x <= pts[0][0]) return pts[0][1];
  for (let i = 1; i < pts.length; i++) {
    const [x0, y0] = pts[i - 1], [x1, y1] = pts[i];
    if (x <= x1) return x1 > x0 ? y0 + (y1 - y0) * (x - x0) / (x1 - x0) : y1;
  }
  return pts[pts.length - 1][1];
}

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v - 1e-9) return m * p;
  return 10 * p;
}

function fmtMHz(v) { return v >= 10000 ? (v / 1000).toFixed(0) + "k" : v >= 1000 ? (v / 1000).toFixed(1) + "k" : Math.round(v).toString(); }

// The CPU range worth showing. A job's curve runs to what its threads can
// use: all of it. An app's runs to the whole cluster's capacity but is flat
// long before: stop soon after the curve is within 0.05 of its top (on the
// clipped scale), keeping the current point in view.
function curveXMax(pts, cpu, kind) {
  const last = pts.length ? pts[pts.length - 1][0] : 0;
  if (kind === "job" || last <= 0) return Math.max(last, cpu) || 1;
  const top = Math.min(1, pts[pts.length - 1][1]);
  let knee = last;
  for (const [x, y] of pts) if (Math.min(1, y) >= top - 0.05) { knee = x; break; }
  if (knee <= 0) return Math.max(last, cpu); // flat: nothing to zoom on
  const xmax = niceCeil(Math.max(knee * 1.15, cpu * 1.1));
  return xmax > last && cpu <= last ? last : xmax;
}

function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

// The workloads of a snapshot: each one's curve and where it runs. With the
// decision (GET /v1/placement/snapshot?of=last) a workload runs where the
// decision put it (cpu) and `before` is where it ran when the controller
// decided; without one, cpu is where it runs in the problem now.
function workloadsOfSnapshot(s, jobNames, minName) {
  const out = [];
  const decided = new Map(((s.decision && s.decision.workloads) || []).map(w => [w.name, w]));
  for (const a of (s.apps || [])) {
    const insts = a.instances || [];
    out.push({ name: a.name, label: a.name, kind: "app", pts: parseCurve(a.utility),
               before: insts.reduce((t, i) => t + (+i.cpu_mhz || 0), 0), n: insts.length });
  }
  for (const j of (s.jobs || [])) {
    // Only a running job has CPU; a waiting (queued, suspended) or paused
    // one sits at 0 MHz.
    out.push({ name: j.name, label: (jobNames && jobNames.get(j.name)) || j.name, kind: "job",
               pts: parseCurve(j.utility), state: j.state,
               before: j.state === "running" ? (+j.cpu_mhz || 0) : 0, n: j.state === "running" ? 1 : 0 });
  }
  for (const w of out) {
    const d = decided.get(w.name);
    w.cpu = d && isFinite(+d.cpu_mhz) ? +d.cpu_mhz : w.before;
    w.nAfter = d && isFinite(+d.instances) ? +d.instances : w.n;
    w.moved = !!d && Math.abs(w.cpu - w.before) > Math.max(1, 0.01 * Math.max(w.cpu, w.before));
    w.u = evalCurve(w.pts, w.cpu);
    w.uc = isFinite(w.u) ? Math.max(-1, w.u) : -1;
    // "1200→2400 MHz": where the decision moved it from.
    const mhz = (w.moved ? Math.round(w.before) + "→" : "") + Math.round(w.cpu) + " MHz";
    if (w.kind === "app") {
      const n = d && w.nAfter !== w.n ? w.n + "→" + w.nAfter + " instances" : plural(w.nAfter, "instance");
      w.caption = "app, " + n + " · " + mhz;
    } else {
      const waiting = w.state === "queued" || w.state === "suspended";
      const change = d && w.nAfter > w.n ? " → runs" : d && w.nAfter < w.n ? " → stops" : waiting ? ", waits" : "";
      w.caption = "job, " + w.state + change + " · " + mhz;
    }
  }
  // Lowest utility first. Ties (many waiting jobs sit at -1): the workload
  // the header names as the minimum, then apps, then by name with numbers
  // in order (job-4 before job-10), so the grid does not reshuffle.
  const rank = w => (w.label === minName ? 0 : 1) * 2 + (w.kind === "app" ? 0 : 1);
  out.sort((a, b) => (Math.abs(a.uc - b.uc) > 1e-9 ? a.uc - b.uc : 0) || rank(a) - rank(b) ||
                     a.label.localeCompare(b.label, undefined, { numeric: true }));
  return out;
}

// The polyline d without what lies below `floor` (a cliff at -40 only has to
// leave the chart): segments crossing it end on it, at the right CPU.
function cutBelow(d, floor) {
  const out = [];
  for (let i = 0; i < d.length; i++) {
    const p = d[i], q = d[i - 1];
    if (q && (q[1] < floor) !== (p[1] < floor))
      out.push([q[0] + (p[0] - q[0]) * (floor - q[1]) / (p[1] - q[1]), floor]);
    if (p[1] >= floor) out.push(p);
  }
  return out.length ? out : [[d[0][0], floor], [d[d.length - 1][0], floor]];
}

function drawCurve(w, highlight) {
  const svg = el("svg", { class: "ucurve", viewBox: `0 0 ${CW} ${CH}`, role: "img",
                          "aria-label": "utility of " + w.label + " vs CPU" });
  const xmax = curveXMax(w.pts, Math.max(w.cpu, w.before), w.kind);
  const x = v => CL + Math.min(v, xmax) / xmax * (CW - CL - CR);
  const y = u => CT + (1 - u) / 2 * (CH - CT - CB);
  const bottom = y(-1);
  // The clip lets a cliff run through the bottom axis and a little beyond,
  // so it reads as "goes further down", while nothing draws over the labels.
  const id = "uclip-" + (++curveSeq);
  const defs = el("defs");
  const cp = el("clipPath", { id });
  cp.appendChild(el("rect", { x: CL, y: CT - 2, width: CW - CL - CR + 1, height: bottom - CT + 8 }));
  defs.appendChild(cp);
  svg.appendChild(defs);
  svg.appendChild(el("line", { class: "axis", x1: CL, y1: CT, x2: CL, y2: bottom }));
  svg.appendChild(el("line", { class: "axis", x1: CL, y1: bottom, x2: CW - CR, y2: bottom }));
  svg.appendChild(el("line", { class: "zero", x1: CL, y1: y(0), x2: CW - CR, y2: y(0) }));
  for (const [v, t] of [[1, "1"], [0, "0"], [-1, "≤−1"]])
    svg.appendChild(el("text", { class: "ylab", x: CL - 6, y: y(v) + 3 }, t));
  for (const [f, anchor] of [[0, "start"], [0.5, "middle"], [1, "end"]])
    svg.appendChild(el("text", { class: "xlab", x: x(f * xmax), y: CH - 6, "text-anchor": anchor },
                       f ? fmtMHz(f * xmax) + (f === 1 ? " MHz" : "") : "0"));
  if (!w.pts.length) {
    svg.appendChild(el("text", { class: "none", x: CW / 2, y: CH / 2 }, "no curve"));
    return svg;
  }
  // The curve within [0, xmax]: flat before the first point, interpolated
  // at the right edge. Values are not clipped here, the clipPath does it.
  const d = [[0, w.pts[0][1]]];
  for (const p of w.pts) if (p[0] > 0 && p[0] < xmax) d.push(p);
  d.push([xmax, evalCurve(w.pts, xmax)]);
  const g = el("g", { "clip-path": `url(#${id})` });
  g.appendChild(el("polyline", { class: "curve", "data-name": w.name,
                                 points: cutBelow(d, -1.25).map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ") }));
  svg.appendChild(g);
  // A cliff: say how deep it goes where it leaves the chart.
  const low = w.pts[0][1];
  if (low < -1.005) {
    let cx = 0;
    for (let i = 1; i < d.length; i++)
      if (d[i][1] >= -1) {
        const [x0, y0] = d[i - 1], [x1, y1] = d[i];
        cx = y1 > y0 ? x0 + (x1 - x0) * (-1 - y0) / (y1 - y0) : x1;
        break;
      }
    svg.appendChild(el("text", { class: "cliff", x: x(cx) + 4, y: bottom - 3 },
                       "↓ " + low.toFixed(2).replace("-", "−") + " at 0"));
  }
  // Where it ran when the controller decided, if the decision moved it.
  if (w.moved) {
    const ub = evalCurve(w.pts, w.before);
    svg.appendChild(el("circle", { class: "before", cx: x(w.before).toFixed(1), cy: y(Math.max(-1, ub)).toFixed(1), r: 3.5,
                                   "data-cpu": w.before.toFixed(1) }));
  }
  // Where it runs now: a guide down to the CPU axis and the marker on the curve.
  const mx = x(w.cpu), my = y(w.uc);
  svg.appendChild(el("line", { class: "guide", x1: mx, y1: my, x2: mx, y2: bottom }));
  const m = el("circle", { class: "marker " + utilClass(w.uc) + (w.u < -1 ? " clipped" : "") + (highlight ? " min" : ""),
                           cx: mx.toFixed(1), cy: my.toFixed(1), r: highlight ? 5 : 4,
                           "data-cpu": w.cpu.toFixed(1), "data-util": w.uc.toFixed(4) });
  svg.appendChild(m);
  return svg;
}

// box: the container; s: the snapshot (null = unavailable, with why);
// ctx.jobNames: "job-7" -> "job-7 build"; ctx.minName: the workload the
// header shows as the minimum (first among equals here).
function renderCurves(box, meta, s, why, ctx) {
  box.replaceChildren();
  if (!s) { box.appendChild(el("div", { class: "muted empty" }, why || "no placement problem yet")); meta.textContent = ""; return; }
  const all = workloadsOfSnapshot(s, ctx && ctx.jobNames, ctx && ctx.minName);
  if (!all.length) { box.appendChild(el("div", { class: "muted empty" }, "no apps or placeable jobs")); meta.textContent = ""; return; }
  const shown = all.slice(0, CURVES_MAX);
  // One workload is highlighted, the first: with many tied at the minimum
  // (waiting jobs) a highlight on each would mark nothing; the meta line
  // counts the tie.
  const tied = all.filter(w => w.uc <= all[0].uc + 1e-6).length;
  shown.forEach((w, i) => {
    const min = i === 0;
    const card = el("div", { class: "ucard " + w.kind + (min ? " min" : ""), "data-name": w.name,
                             "data-kind": w.kind, "data-util": w.uc.toFixed(4) });
    const tip = (w.kind === "job"
      ? w.label + ": utility if the job gets this CPU for the decision horizon" +
        (w.state === "running" ? "" : " (waiting: it sits at 0 MHz)")
      : w.label + ": utility at this total CPU over its instances") +
      "\n● " + Math.round(w.cpu) + " MHz, utility " + (w.u < -1 ? "≤ " : "") + fmtUtil(w.uc) +
      (w.moved ? "\n○ " + Math.round(w.before) + " MHz when the controller decided" : "");
    card.setAttribute("title", tip);
    const head = el("div", { class: "uhead" });
    head.appendChild(el("span", { class: "uname" }, w.label));
    if (min) head.appendChild(el("span", { class: "badge" }, "minimum"));
    head.appendChild(el("span", { class: "uval " + utilClass(w.uc) }, (w.u < -1 ? "≤" : "") + fmtUtil(w.uc)));
    card.appendChild(head);
    card.appendChild(drawCurve(w, min));
    const cap = el("div", { class: "ucap muted" }, w.caption);
    card.appendChild(cap);
    box.appendChild(card);
  });
  if (all.length > shown.length) {
    const rest = all.length - shown.length;
    box.appendChild(el("div", { class: "umore muted" },
                       rest + " more (utility ≥ " + fmtUtil(all[shown.length].uc) + ") not drawn"));
  }
  const apps = all.filter(w => w.kind === "app").length;
  const when = /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)/.exec(s.comment || "");
  const at = when ? new Date(when[1]).toLocaleTimeString() : new Date().toLocaleTimeString();
  meta.textContent = (s.decision ? "the problem of the decision at " + at : "the problem at " + at + " (no decision yet)") +
                     " · " + plural(apps, "app") + " · " + plural(all.length - apps, "job") + " · lowest utility first" +
                     (tied > 1 ? " · " + tied + " at the minimum " + fmtUtil(all[0].uc) : "");
}
