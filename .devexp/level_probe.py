"""Per-capture optimal gain of a fitted twin (scratch): is the level the error?"""
import sys, numpy as np
from unit_tui.project import Project
from unit_tui.training import load_items, load_model
from dsp.fit import shift_signal
proj = Project.open(sys.argv[1]); bid = proj.rig.blocks[0].id
twin = load_model(proj, bid)
loaded = load_items(proj, bid)
lat = twin.latency_samples
sr = loaded.items[0].sample_rate
pat = sys.argv[2] if len(sys.argv) > 2 else ""
for it in loaded.items:
    if pat not in it.name: continue
    n = int(sr * 12)
    x = it.input[:n].astype(np.float64); y = it.target[:n].astype(np.float64)
    yh = twin.render(it.knobs, x, sr).astype(np.float64)
    ys = shift_signal(y, lat)
    a, b = yh[4800:n-4800], ys[4800:n-4800]
    esr = ((b-a)**2).sum()/(b**2).sum()
    g = (a*b).sum()/(a*a).sum()
    esr_g = ((b-g*a)**2).sum()/(b**2).sum()
    print(f"{it.name:32s} {str({k: round(v,1) for k,v in it.knobs.items()}):40s} ESR {esr:.4f} gain {20*np.log10(abs(g)):+6.2f} dB -> {esr_g:.4f}")
