"""Per-capture level spread per knob after the per-capture stage (scratch).
python .devexp/level_span.py PROJECT BUDGET_S [variant=1 ...]"""
import sys, os
import torch
torch.set_num_threads(1)
from unit_tui.project import Project
from unit_tui.training import load_items, knob_specs
from dsp.fit import Fitter, FitConfig, STAGES
proj = Project.open(sys.argv[1]); budget = float(sys.argv[2])
variants = {a.split("=")[0]: int(a.split("=")[1]) for a in sys.argv[3:]}
block_id = proj.rig.blocks[0].id
loaded = load_items(proj, block_id)
names = [k.name for k in knob_specs(loaded.block)]
its = [dict(name=it.name, knobs={k: float(v) for k, v in it.knobs.items() if k in names}, input=it.input,
            target=it.target, sample_rate=it.sample_rate, latency_samples=it.latency_samples,
            latency_hint=it.latency_hint, holdout=it.holdout) for it in loaded.items]
f = Fitter(loaded.block.topology, [k._def() for k in knob_specs(loaded.block)], its, seed=0,
           config=FitConfig(variants=variants or None))
f.run(should_stop=lambda: f.stage >= STAGES.index("curves"), time_budget_s=budget)
cn = f.topo.control_names(); g = cn.index("level_db")
spec = f.topo.spec("level_db")
lvl = spec.to_physical(f.item_raw[:, g]).tolist()
base = float(spec.to_physical(f.map.base[g]))
print("base level", round(base, 2))
for k, kd in enumerate(f.knobs):
    sw = [i for i in f.train_idx if f._off_reference(i) == [k]]
    print(kd.name, f.map.knobs[k].affects, [(f.items[i]["knobs"][kd.name], round(lvl[i] - base, 2)) for i in sw])
