#!/usr/bin/env python3
"""The dashboard part of the operator walkthrough (issue 19, item 9), in
headless Chromium (the browser driver of tests/dashboard/cdp.py):
  - without a token, and with a wrong one, the page asks for the token in a
    form; typing the right one opens the dashboard;
  - apps and jobs that no longer exist (--gone) are not in the legend, and no
    two visible series share a colour;
  - the jobs table gives the reason of a failed job (--failed-job);
  - every node shows its power state;
  - the problems banner names a crash-looping app (--crashing).
"""
import argparse
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.environ["WLM_SOURCE_DIR"], "tests", "dashboard"))
from cdp import Browser, dom_excerpt  # noqa: E402

PAGE_JS = r"""(() => {
  const q = s => document.querySelector(s);
  const form = q('#token-form');
  return {
    form: !!form && !form.classList.contains('hidden') && !!q('#token-input'),
    why: (q('#token-why') || {}).textContent || '',
    nodes: [...document.querySelectorAll('#placement .node')].map(n => ({
      name: n.dataset.node, power: (n.querySelector('[data-power]') || {dataset: {}}).dataset.power})),
    legend: [...document.querySelectorAll('#legend span:not(.min)')].map(s => ({
      text: s.textContent, colour: s.style.getPropertyValue('--c').trim()})),
    series: [...document.querySelectorAll('#chart polyline.series')].map(p => p.dataset.name),
    jobs: [...document.querySelectorAll('#jobs tbody tr')].map(r => [...r.children].map(td => td.textContent)),
    problems: (q('#problems') && !q('#problems').classList.contains('hidden')) ? q('#problems').textContent : '',
    flows: [...document.querySelectorAll('#flows tbody tr')].map(r => r.children[0].textContent),
  };
})()"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--nodes", required=True)
    ap.add_argument("--gone", default="", help="workloads that must not be in the legend")
    ap.add_argument("--failed-job", required=True, help="id of a FAILED job")
    ap.add_argument("--crashing", required=True, help="an app that crash-loops")
    ap.add_argument("--log")
    a = ap.parse_args()
    W, H = 1400, 1000
    b = Browser(a.chromium, W, H, a.log)
    sid = None
    try:
        state = lambda s: b.eval(s, PAGE_JS)
        # No token: a form asks for it; nothing else is shown.
        sid = b.open_page(f"{a.base}/dashboard/", W, H)
        t0 = time.time()
        while time.time() - t0 < 15 and not state(sid)["form"]:
            time.sleep(0.2)
        st = state(sid)
        if not st["form"]:
            raise AssertionError(f"no token form without a token: {st}")
        print("without a token:", st["why"])
        # Typing the token opens the dashboard (kept in this browser).
        b.eval(sid, "document.getElementById('token-input').value = %r;"
                    "document.getElementById('token-form').requestSubmit(); 1" % a.token)
        t0 = time.time()
        want = sorted(a.nodes.split(","))
        while time.time() - t0 < 30:
            try:
                st = state(sid)
            except RuntimeError:
                st = None  # reloading
            if st and sorted(n["name"] for n in st["nodes"]) == want and not st["form"]:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"typing the token did not open the dashboard: {st}")
        print("after typing the token: nodes", [n["name"] for n in st["nodes"]])
        for n in st["nodes"]:
            if n["power"] not in ("on", "off"):
                raise AssertionError(f"node {n['name']} shows no power state: {n}")
        print("power:", ", ".join(f"{n['name']} {n['power']}" for n in st["nodes"]))

        # Legend: only what exists now, colours not repeated.
        t0 = time.time()
        while time.time() - t0 < 30:
            st = state(sid)
            if st["legend"] and st["problems"] and len(st["jobs"]) > 0:
                break
            time.sleep(0.3)
        names = [x["text"].rsplit(" ", 1)[0] for x in st["legend"]]
        print("legend:", names)
        for g in [x for x in a.gone.split(",") if x]:
            if any(n == g or n.startswith(g + " ") for n in names) or g in st["series"]:
                raise AssertionError(f"{g} (gone) is still in the legend or the chart: {names}")
            if any(f.startswith(g + "/") for f in st["flows"]):
                raise AssertionError(f"{g} (deleted) is still in the flow table: {st['flows']}")
        colours = [x["colour"] for x in st["legend"]]
        if len(set(colours)) != len(colours):
            raise AssertionError(f"colours repeat among visible series: {st['legend']}")
        # The failed job's reason.
        row = [r for r in st["jobs"] if r and r[0] == a.failed_job]
        if not row or row[0][2] != "FAILED" or not row[0][-1].strip():
            raise AssertionError(f"job {a.failed_job} has no FAILED row with a reason: {st['jobs']}")
        print(f"job {a.failed_job}: {row[0][2]}: {row[0][-1]}")
        if a.crashing not in st["problems"] or "crash-looping" not in st["problems"]:
            raise AssertionError(f"the problems banner does not name {a.crashing}: {st['problems']!r}")
        print("problems banner:", st["problems"])

        # A wrong token: the form again, saying it was refused.
        sid = b.open_page(f"{a.base}/dashboard/#token={urllib.parse.quote('wrong-' + a.token)}", W, H)
        t0 = time.time()
        while time.time() - t0 < 15:
            st = state(sid)
            if st["form"] and "refused" in st["why"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"a wrong token did not bring the form back: {st}")
        if st["nodes"]:
            raise AssertionError("data shown with a wrong token")
        print("wrong token:", st["why"])
        errs = [e for e in b.console_errors() if e and "401" not in e]
        if errs:
            raise AssertionError("script errors on the page: " + "; ".join(errs[:5]))
        print("dashboard walkthrough: ok")
        return 0
    except (AssertionError, RuntimeError, OSError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        if sid:
            print("DOM excerpt:\n" + dom_excerpt(b, sid), file=sys.stderr)
        return 1
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
