// wlm dashboard: the utility functions the placement controller works on now,
// one small chart per workload (utility vs CPU MHz, piecewise linear) with a
// marker where the workload runs, so an operator sees why it decided so.
// Input: GET /v1/placement/snapshot (docs/snapshot.md). Uses el() and
// fmtUtil()/utilClass() from app.js (loaded after this file, called later).
"use strict";

const CURVES_MAX = 24;          // charts drawn; the rest are counted
const CW = 240, CH = 124;       // chart viewBox
const CL = 30, CR = 8, CT = 8, CB = 20;
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

// One workload from the snapshot: its curve and where it runs now.
function workloadsOfSnapshot(s, jobNames, minName) {
  const out = [];
  for (const a of (s.apps || [])) {
    const insts = a.instances || [];
    const cpu = insts.reduce((t, i) => t + (+i.cpu_mhz || 0), 0);
    out.push({ name: a.name, label: a.name, kind: "app", pts: parseCurve(a.utility), cpu,
               caption: insts.length + (insts.length === 1 ? " instance" : " instances") });
  }
  for (const j of (s.jobs || [])) {
    const running = j.state === "running";
    const cpu = running ? (+j.cpu_mhz || 0) : 0;
    const waiting = j.state === "queued" || j.state === "suspended";
    out.push({ name: j.name, label: (jobNames && jobNames.get(j.name)) || j.name, kind: "job",
               pts: parseCurve(j.utility), cpu, state: j.state,
               caption: waiting ? j.state + " (waiting)" : j.state });
  }
  for (const w of out) {
    w.u = evalCurve(w.pts, w.cpu);
    w.uc = isFinite(w.u) ? Math.max(-1, w.u) : -1;
  }
  // Lowest utility first. Ties (many waiting jobs sit at -1): the workload
  // the header names as the minimum, then apps, then by name with numbers
  // in order (job-4 before job-10), so the grid does not reshuffle.
  const rank = w => (w.label === minName ? 0 : 1) * 2 + (w.kind === "app" ? 0 : 1);
  out.sort((a, b) => (Math.abs(a.uc - b.uc) > 1e-9 ? a.uc - b.uc : 0) || rank(a) - rank(b) ||
                     a.label.localeCompare(b.label, undefined, { numeric: true }));
  return out;
}

function drawCurve(w, highlight) {
  const svg = el("svg", { class: "ucurve", viewBox: `0 0 ${CW} ${CH}`, role: "img",
                          "aria-label": "utility of " + w.label + " vs CPU" });
  const xmax = curveXMax(w.pts, w.cpu, w.kind);
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
    svg.appendChild(el("text", { class: "ylab", x: CL - 3, y: y(v) + 3 }, t));
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
  // Far below -1 the line only has to leave the chart: keep coordinates sane.
  const yc = u => y(Math.max(u, -3));
  const g = el("g", { "clip-path": `url(#${id})` });
  g.appendChild(el("polyline", { class: "curve", "data-name": w.name,
                                 points: d.map(p => x(p[0]).toFixed(1) + "," + yc(p[1]).toFixed(1)).join(" ") }));
  svg.appendChild(g);
  // A cliff: say how deep it goes where it leaves the chart.
  const low = w.pts[0][1];
  if (low < -1) {
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
    const tip = w.kind === "job"
      ? w.label + ": utility if the job gets this CPU for the decision horizon" +
        (w.state === "running" ? "" : " (waiting: it sits at 0 MHz)")
      : w.label + ": utility at this total CPU over its instances";
    card.setAttribute("title", tip);
    const head = el("div", { class: "uhead" });
    head.appendChild(el("span", { class: "uname" }, w.label));
    if (min) head.appendChild(el("span", { class: "badge" }, "minimum"));
    head.appendChild(el("span", { class: "uval " + utilClass(w.uc) }, (w.u < -1 ? "≤" : "") + fmtUtil(w.uc)));
    card.appendChild(head);
    card.appendChild(drawCurve(w, min));
    const cap = el("div", { class: "ucap muted" },
                   w.kind + ", " + w.caption + " · now " + Math.round(w.cpu) + " MHz");
    card.appendChild(cap);
    box.appendChild(card);
  });
  if (all.length > shown.length) {
    const rest = all.length - shown.length;
    box.appendChild(el("div", { class: "umore muted" },
                       rest + " more (utility ≥ " + fmtUtil(all[shown.length].uc) + ") not drawn"));
  }
  const apps = all.filter(w => w.kind === "app").length;
  meta.textContent = apps + (apps === 1 ? " app · " : " apps · ") + (all.length - apps) +
                     (all.length - apps === 1 ? " job" : " jobs") + " · lowest utility first" +
                     (tied > 1 ? " · " + tied + " at the minimum " + fmtUtil(all[0].uc) : "") +
                     " · problem as of " + new Date().toLocaleTimeString();
}
