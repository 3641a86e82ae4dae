"""Which of a fitted twin's controls sit at an edge of their range.

    python benchmarks/edge_probe.py TWIN.json [--settings SETTINGS.json] [--edge 0.03]

A control the fit pushes against the end of its range (the sigmoid's position
``u`` within ``edge`` of 0 or 1) may be held back by the range, as the amp's
interstage low-passes were at 20 kHz until session 22. For each control that
any knob moves or that is fixed per twin, this prints the range, the values it
takes over the settings (the twin's captured settings from its report, or the
given ones), and how many sit at an edge; the shared values and the structural
options that are on are printed after.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("twin", help="a *.twin.json")
    ap.add_argument("--settings", help="JSON list of knob settings (default: the report's items)")
    ap.add_argument("--edge", type=float, default=0.03, help="position within the range counted as the edge")
    ap.add_argument("--all", action="store_true", help="print every control, not only those at an edge")
    a = ap.parse_args(argv)

    from dsp.twin import FittedBlock

    block = FittedBlock.load(a.twin)
    if a.settings:
        settings = json.loads(Path(a.settings).read_text())
    else:
        settings = [it["knobs"] for it in block.report().get("items", [])] or [{}]
    phys = [block.controls(s) for s in settings]
    specs = {c["name"]: c for c in block.knob_map["controls"]}
    print(f"{a.twin}: {block.topology}, {len(settings)} settings, oversample {block.oversample}")
    print(f"{'control':<18} {'range':>22} {'min':>10} {'median':>10} {'max':>10}  at low / high edge")
    for name, c in specs.items():
        lo, hi = float(c["minimum"]), float(c["maximum"])
        log = c["scale"] == "log"

        def pos(v, lo=lo, hi=hi, log=log):
            if log:
                return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return (v - lo) / (hi - lo)

        vals = sorted(p[name] for p in phys)
        u = [pos(v) for v in vals]
        n_lo = sum(x < a.edge for x in u)
        n_hi = sum(x > 1 - a.edge for x in u)
        if not (a.all or n_lo or n_hi):
            continue
        mark = "  <--" if n_lo or n_hi else ""
        print(f"{name:<18} {lo:>10.4g} - {hi:<10.4g} {vals[0]:>10.4g} {vals[len(vals) // 2]:>10.4g} "
              f"{vals[-1]:>10.4g}  {n_lo:>3} / {n_hi:<3}{mark}")
    shared = block.to_dict()["shared_physical"]
    tables = [k for k in shared if re.fullmatch(r"shape\d_\d+", k)]
    print("shared:", ", ".join(f"{k}={v:.4g}" for k, v in sorted(shared.items()) if k not in tables)
          + (f" ({len(tables)} shaper-table values not shown)" if tables else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
