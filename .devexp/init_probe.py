import sys, os
os.environ["UNIT_FIT_DEBUG"] = "1"
import torch
torch.set_num_threads(1)
from unit_tui.project import Project
from unit_tui.training import load_items, knob_specs
from dsp.fit import Fitter, FitConfig
proj = Project.open(sys.argv[1]); seed = int(sys.argv[2])
block_id = proj.rig.blocks[0].id
loaded = load_items(proj, block_id)
names = [k.name for k in knob_specs(loaded.block)]
its = [dict(name=it.name, knobs={k: float(v) for k, v in it.knobs.items() if k in names}, input=it.input,
            target=it.target, sample_rate=it.sample_rate, latency_samples=it.latency_samples,
            latency_hint=it.latency_hint, holdout=it.holdout) for it in loaded.items]
f = Fitter(loaded.block.topology, [k._def() for k in knob_specs(loaded.block)], its, seed=seed,
           config=FitConfig(variants={"drive_section": 1}))
f._prepare(); f._should_stop = lambda: False
f._init_variants(f._reference_item())
