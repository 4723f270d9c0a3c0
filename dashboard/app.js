// wlm admin dashboard: utilities over time, utility functions (curves.js),
// placement map, jobs and flows.
// Plain DOM + SVG; no external resources (the cluster may have no internet).
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) localStorage.setItem("wlm-token", params.get("token"));
const token = params.get("token") || localStorage.getItem("wlm-token") || "";
const headers = token ? { Authorization: "Bearer " + token } : {};
let tokenRefused = false;
const HISTORY_SECONDS = 900;
const palette = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#f778ba", "#79c0ff",
                 "#56d364", "#e3b341", "#ff7b72", "#a5d6ff", "#ffa657", "#7ee787"];
const series = new Map(); // workload name -> [{t, u}]
const minSeries = [];     // [{t, u, name}]
const jobNames = new Map(); // "job-7" (the placement problem's name) -> "job-7 build"
let minName = "";           // the minimum-utility workload the header shows
let lastPoint = 0;

function $(id) { return document.getElementById(id); }
function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || ["path", "line", "text", "polyline", "g", "circle", "rect", "defs", "clipPath"].includes(tag)
    ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function showError(msg) {
  const e = $("error");
  if (!msg) { e.classList.add("hidden"); return; }
  e.textContent = msg;
  e.classList.remove("hidden");
}
// No token, or one the controller refused: ask for it. The token is kept
// in this browser (localStorage) and sent as a bearer header.
function askToken(why) {
  tokenRefused = true;
  $("token-why").textContent = why;
  $("token-form").classList.remove("hidden");
  $("token-input").focus();
}
$("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const t = $("token-input").value.trim();
  if (!t) return;
  localStorage.setItem("wlm-token", t);
  location.hash = "";
  location.reload();
});
const TOKEN_REFUSED = "the controller refused the token: enter the right one above";
async function getJSON(path) {
  const r = await fetch(path, { headers });
  if (r.status === 401) {
    askToken(token ? "The controller refused the token this browser has." :
                     "The controller needs its token to show anything.");
    throw new Error(token ? TOKEN_REFUSED : "no token: enter the controller's token above");
  }
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function fmtUtil(u) { return (u === null || u === undefined || isNaN(u)) ? "–" : u.toFixed(3); }
function utilClass(u) { return u >= 0 ? "good" : (u > -0.3 ? "warn" : "bad"); }
function fmtTime(t) {
  if (!t) return "–";
  return new Date(t * 1000).toLocaleTimeString();
}

function addPoint(t, workloads, min) {
  if (t <= lastPoint) return;
  lastPoint = t;
  for (const w of workloads) {
    if (!series.has(w.name)) series.set(w.name, []);
    series.get(w.name).push({ t, u: w.utility });
  }
  if (min) minSeries.push({ t, u: min.utility, name: min.name });
  const cutoff = t - HISTORY_SECONDS;
  for (const [name, pts] of series) {
    while (pts.length && pts[0].t < cutoff) pts.shift();
    if (!pts.length) series.delete(name);
  }
  while (minSeries.length && minSeries[0].t < cutoff) minSeries.shift();
}

function drawChart() {
  const svg = $("chart");
  const W = 900, H = 260, L = 40, R = 10, T = 10, B = 22;
  svg.replaceChildren();
  let t0 = Infinity, t1 = -Infinity, lo = -1, hi = 1;
  for (const pts of series.values()) for (const p of pts) {
    t0 = Math.min(t0, p.t); t1 = Math.max(t1, p.t);
    lo = Math.min(lo, p.u); hi = Math.max(hi, p.u);
  }
  if (!isFinite(t0)) { svg.appendChild(el("text", { x: W / 2 - 60, y: H / 2 }, "waiting for data…")); return; }
  if (t1 - t0 < 10) t0 = t1 - 10;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = u => T + (hi - u) / (hi - lo) * (H - T - B);
  svg.appendChild(el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.appendChild(el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.appendChild(el("line", { class: "zero", x1: L, y1: y(0), x2: W - R, y2: y(0) }));
  for (const v of [lo, 0, hi]) svg.appendChild(el("text", { x: 4, y: y(v) + 3 }, v.toFixed(1)));
  svg.appendChild(el("text", { x: L, y: H - 6 }, fmtTime(t0)));
  svg.appendChild(el("text", { x: W - R - 60, y: H - 6 }, fmtTime(t1)));
  // The minimum is a wide translucent band drawn first: the workload that is
  // the minimum stays visible on top of it instead of being hidden.
  if (minSeries.length) {
    const d = minSeries.map(p => x(p.t).toFixed(1) + "," + y(p.u).toFixed(1)).join(" ");
    svg.appendChild(el("polyline", { class: "min", points: d }));
  }
  const legend = $("legend");
  legend.replaceChildren();
  for (const [name, pts] of series) {
    // Deleted apps and ended jobs leave the chart and the legend (their
    // history stays in the API).
    if (activeNames && !activeNames.has(name)) continue;
    const color = colorOf(name);
    const d = pts.map(p => x(p.t).toFixed(1) + "," + y(p.u).toFixed(1)).join(" ");
    svg.appendChild(el("polyline", { class: "series", points: d, stroke: color, "data-name": name }));
    const s = el("span", { style: "--c:" + color }, name + " " + fmtUtil(pts[pts.length - 1].u));
    legend.appendChild(s);
  }
  if (minSeries.length) legend.appendChild(el("span", { class: "min", style: "--c:#fff" }, "minimum"));
}

// Colours: each visible series keeps the colour it got first; a colour is
// never given to two visible series at once (past the palette, hues at the
// golden angle).
const colours = new Map();
function colorOf(name) {
  if (colours.has(name)) return colours.get(name);
  const used = new Set();
  for (const [n, c] of colours) if (!activeNames || activeNames.has(n)) used.add(c);
  let c = palette.find(x => !used.has(x));
  for (let k = 0; !c; k++) {
    const h = "hsl(" + Math.round((k * 137.508 + 20) % 360) + ", 70%, 62%)";
    if (!used.has(h)) c = h;
  }
  colours.set(name, c);
  return c;
}
function forgetColours() {
  for (const n of [...colours.keys()]) if (activeNames && !activeNames.has(n)) colours.delete(n);
}
let activeNames = null;      // workloads that exist now (apps deployed, jobs not ended)
let deployedApps = null;     // app names deployed now (flows of others are hidden)

function rememberJobName(full) {
  const k = String(full).split(" ")[0];
  if (k.startsWith("job-")) jobNames.set(k, String(full));
}

function renderUtilities(u) {
  if (!u) return;
  // The workloads that exist now: deleted apps and ended jobs drop out of
  // the legend (and leave their colour to others).
  activeNames = new Set((u.workloads || []).map(w => w.name));
  forgetColours();
  for (const w of (u.workloads || [])) if (w.kind === "job") rememberJobName(w.name);
  for (const h of (u.history || [])) addPoint(h.t, Object.entries(h.workloads || {}).map(([name, utility]) => ({ name, utility })), h.min);
  addPoint(u.now, u.workloads || [], u.min);
  const m = u.min;
  minName = m ? m.name : "";
  $("min-utility").textContent = m ? fmtUtil(m.utility) : "–";
  $("min-utility").className = m ? utilClass(m.utility) : "";
  $("min-name").textContent = m ? "(" + m.name + ")" : "";
  drawChart();
}

function renderPlacement(p) {
  const box = $("placement");
  box.replaceChildren();
  if (!p) { box.textContent = "no placement yet"; return; }
  // Sorted by name: the map does not reshuffle when the controller's order changes.
  const nodes = (p.nodes || []).slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
  let on = 0;
  for (const n of nodes) {
    const off = n.power === "off";
    if (!off) on++;
    const div = el("div", { class: "node" + (off ? " off" : "") + (n.state === "LOST" ? " lost" : ""), "data-node": n.name });
    const used = (n.instances || []).reduce((a, i) => a + (i.cpu_mhz || 0), 0);
    const cap = n.cpu_mhz || 1;
    const h = el("h3");
    h.appendChild(el("span", {}, n.name));
    h.appendChild(el("span", { class: "muted power", "data-power": off ? "off" : "on" },
                     "power " + (off ? "off" : "on") + " · " + (n.state || "") + " · " + Math.round(used) + "/" + Math.round(cap) + " MHz"));
    div.appendChild(h);
    const bar = el("div", { class: "bar" });
    bar.appendChild(el("div", { style: "width:" + Math.min(100, used / cap * 100).toFixed(1) + "%" }));
    div.appendChild(bar);
    for (const i of (n.instances || [])) {
      const r = el("div", { class: "inst " + (i.kind || "app") + (i.state === "SUSPENDED" ? " suspended" : "") });
      r.appendChild(el("span", {}, i.name));
      r.appendChild(el("span", {}, Math.round(i.cpu_mhz || 0) + " MHz · " + (i.memory_mb || 0) + " MB"));
      div.appendChild(r);
    }
    box.appendChild(div);
  }
  $("nodes-summary").textContent = on + "/" + nodes.length;
  const meta = [];
  if (p.solver) meta.push("solver " + p.solver);
  if (p.gap !== undefined && p.gap !== null) meta.push("gap " + (100 * p.gap).toFixed(2) + " %");
  if (p.decided_at) meta.push("decided " + fmtTime(p.decided_at));
  $("placement-meta").textContent = meta.join(" · ");
}

function emptyRow(tb, cols, text) {
  const tr = el("tr");
  tr.appendChild(el("td", { colspan: cols, class: "muted empty" }, text));
  tb.appendChild(tr);
}

function renderJobs(j) {
  const tb = $("jobs").querySelector("tbody");
  tb.replaceChildren();
  const jobs = (j && j.jobs) || [];
  const counts = {};
  for (const job of jobs) {
    counts[job.state] = (counts[job.state] || 0) + 1;
    if (job.name) rememberJobName("job-" + job.id + " " + job.name);
    const tr = el("tr");
    const pred = job.predicted_completion, goal = job.goal_time;
    const late = pred && goal && pred > goal;
    // Why a job waits or failed; running and completed jobs need no word.
    const why = ["FAILED", "PENDING", "ELIGIBLE", "CANCELLED", "SUSPENDED"].includes(job.state) ? (job.reason || "") : "";
    for (const [v, cls] of [[job.id, ""], [job.name, ""], [job.state, job.state === "FAILED" ? "bad" : ""], [job.class || "", ""],
                           [fmtTime(goal), ""], [fmtTime(pred), late ? "bad" : ""], [why, "reason"]])
      tr.appendChild(el("td", cls ? { class: cls } : {}, v === undefined || v === null ? "" : String(v)));
    tb.appendChild(tr);
  }
  if (!jobs.length) emptyRow(tb, 7, "no jobs submitted");
  const done = counts.COMPLETED || 0, running = counts.RUNNING || 0;
  const queued = (counts.PENDING || 0) + (counts.ELIGIBLE || 0) + (counts.SUSPENDED || 0);
  $("jobs-summary").textContent = done + " done · " + running + " running · " + queued + " queued";
}

function renderFlows(f) {
  const tb = $("flows").querySelector("tbody");
  tb.replaceChildren();
  // Flows of deleted apps stay in the API's history, not in the table.
  const flows = ((f && f.flows) || []).filter(fl => !deployedApps || deployedApps.has(fl.app));
  if (!flows.length) emptyRow(tb, 5, "no routed traffic yet");
  for (const fl of flows) {
    const tr = el("tr");
    const bad = fl.goal_ms && fl.rt_ms > fl.goal_ms;
    tr.appendChild(el("td", {}, fl.app + "/" + fl.class));
    tr.appendChild(el("td", { class: "num" }, (fl.rate || 0).toFixed(1)));
    tr.appendChild(el("td", { class: "num " + (bad ? "bad" : "good") }, (fl.rt_ms || 0).toFixed(1)));
    tr.appendChild(el("td", { class: "num" }, fl.goal_ms ? String(fl.goal_ms) : "–"));
    tr.appendChild(el("td", { class: "num" }, String(fl.rejected || 0)));
    tb.appendChild(tr);
  }
}

// The problem of the last placement decision, with the decision (GET
// /v1/placement/snapshot?of=last); before the first decision, the problem
// as it stands now. One request at a time; one asked for meanwhile runs
// once the current one is done.
let curvesBusy = false, curvesAgain = false;
async function refreshCurves() {
  if (curvesBusy) { curvesAgain = true; return; }
  curvesBusy = true;
  try {
    let r = await fetch("/v1/placement/snapshot?of=last", { headers });
    if (r.status === 404) r = await fetch("/v1/placement/snapshot", { headers });
    if (r.status === 401) throw new Error(TOKEN_REFUSED);
    if (r.status === 409) {
      // No READY node: the controller has no problem to solve.
      const e = await r.json().catch(() => ({}));
      renderCurves($("curves"), $("curves-meta"), null, e.detail || "no READY node: nothing to place");
    } else if (!r.ok) {
      throw new Error("/v1/placement/snapshot: HTTP " + r.status);
    } else {
      renderCurves($("curves"), $("curves-meta"), await r.json(), null, { jobNames, minName });
    }
  } catch (e) {
    showError(String(e.message || e));
  } finally {
    curvesBusy = false;
    if (curvesAgain) { curvesAgain = false; refreshCurves(); }
  }
}

// What the operator must act on, from /v1/summary: a router the controller
// cannot configure, apps that crash-loop or cannot be placed.
function renderProblems(s) {
  const box = $("problems");
  box.replaceChildren();
  const items = (s && s.problems) || [];
  if (s && s.jobs && s.jobs.waiting_for_vm_slot)
    items.push(s.jobs.waiting_for_vm_slot + " queued jobs wait for a VM slot (more jobs than free slots in the nodes' image pools)");
  for (const t of items) box.appendChild(el("div", {}, "⚠ " + t));
  box.classList.toggle("hidden", !items.length);
}

async function refresh() {
  if (tokenRefused) return;
  try {
    const [u, p, j, f, a, s] = await Promise.all([getJSON("/v1/utilities"), getJSON("/v1/placement"),
                                                  getJSON("/v1/jobs"), getJSON("/v1/flows"),
                                                  getJSON("/v1/apps"), getJSON("/v1/summary")]);
    deployedApps = a ? new Set((a.apps || []).filter(x => x.state !== "deleting").map(x => x.name)) : null;
    renderUtilities(u); renderPlacement(p); renderJobs(j); renderFlows(f); renderProblems(s);
    showError(null);
    refreshCurves();
  } catch (e) { showError(String(e.message || e)); }
}

// Server-Sent Events through fetch, so the token travels in a header.
async function stream() {
  for (;;) {
    if (tokenRefused) return;
    try {
      const r = await fetch("/v1/events", { headers });
      if (!r.ok || !r.body) throw new Error("events: HTTP " + r.status);
      $("live").classList.remove("off");
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let k;
        while ((k = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, k); buf = buf.slice(k + 2);
          let ev = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) ev = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (ev === "cycle" && data) {
            const d = JSON.parse(data);
            if (d.utilities) renderUtilities(d.utilities);
            if (d.placement) renderPlacement(d.placement);
          } else if (ev === "placement") {
            // A new decision: its map and the curves it was made on.
            getJSON("/v1/placement").then(renderPlacement, () => {});
            refreshCurves();
          } else if (ev === "jobs" || ev === "flows") {
            refresh();
          }
        }
      }
    } catch (e) { /* fall through to retry */ }
    $("live").classList.add("off");
    await new Promise(r => setTimeout(r, 2000));
  }
}

if (!token) {
  askToken("The controller needs its token to show anything.");
  showError("no token: enter the controller's token above");
} else {
  refresh();
  setInterval(refresh, 5000);
  stream();
}
