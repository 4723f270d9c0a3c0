#!/usr/bin/env python3
"""Draw the power-cap curve of `wlm-sim --experiment exp2cap --out P` from
P-summary.csv as an SVG: jobs missed (%) and mean minimum utility against
the cluster cap, the controller's split against an equal cap per node.

  capplot.py P-summary.csv out.svg
"""
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
val = {(int(r["cap_pct"]), r["split"], r["metric"]): float(r["mean"]) for r in rows}
caps = sorted({k[0] for k in val}, reverse=True)
W, H, L, R, T, B = 860, 300, 60, 20, 30, 40
colors = {"wlm": "#1f77b4", "equal": "#d62728"}
out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
       'font-size="12">' % (W, H), '<rect width="100%" height="100%" fill="white"/>']


def panel(x0, width, metric, lo, hi, title, fmt):
    x = lambda c: x0 + L + (max(caps) - c) / (max(caps) - min(caps)) * (width - L - R)
    y = lambda v: T + (hi - v) / (hi - lo) * (H - T - B)
    out.append('<text x="%d" y="18" font-weight="bold">%s</text>' % (x0 + L, title))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (x0 + L, T, x0 + L, H - B))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (x0 + L, H - B, x0 + width - R, H - B))
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (x0 + L - 4, y(v) + 4, fmt % v))
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' % (x0 + L, y(v), x0 + width - R, y(v)))
    for c in caps:
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d %%</text>' % (x(c), H - B + 16, c))
    out.append('<text x="%d" y="%d" text-anchor="middle">cluster power cap (%% of peak)</text>' % (x0 + width / 2, H - 6))
    for s, col in colors.items():
        pts = " ".join("%.1f,%.1f" % (x(c), y(max(lo, min(hi, val[(c, s, metric)])))) for c in caps)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>' % (pts, col))
        for c in caps:
            out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (x(c), y(max(lo, min(hi, val[(c, s, metric)]))), col))


panel(0, W / 2, "jobs_missed_pct", 0, 100, "jobs missing their goal (%)", "%.0f")
panel(W / 2, W / 2, "min_utility_mean", -20, 1, "minimum utility, mean over decisions (clipped at -20)", "%.0f")
lx = W - 250
for i, (s, col) in enumerate(colors.items()):
    label = "wlm: split by planned CPU" if s == "wlm" else "equal cap on every node"
    out.append('<rect x="%d" y="%d" width="14" height="3" fill="%s"/>' % (lx, 40 + 16 * i, col))
    out.append('<text x="%d" y="%d">%s</text>' % (lx + 20, 45 + 16 * i, label))
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
