"""Profile one joint-stage training step on a Guitarix project (scratch)."""
import sys, time
import torch
torch.set_num_threads(1)
from unit_tui.project import Project
from unit_tui.training import load_items, knob_specs
from dsp.fit import Fitter, FitConfig

proj = Project.open(sys.argv[1])
block_id = proj.rig.blocks[0].id
loaded = load_items(proj, block_id)
names = [k.name for k in knob_specs(loaded.block)]
its = [dict(name=it.name, knobs={k: float(v) for k, v in it.knobs.items() if k in names}, input=it.input,
            target=it.target, sample_rate=it.sample_rate, latency_samples=it.latency_samples,
            latency_hint=getattr(it, "latency_hint", None), holdout=it.holdout) for it in loaded.items]
cfg = FitConfig(variants={"drive_section": 1})
f = Fitter(loaded.block.topology, [k._def() for k in knob_specs(loaded.block)], its, seed=0, config=cfg)
f._prepare()
for k, v in {"drive_section": 1.0}.items():
    f.topo.shared[k].data.fill_(v)
c = f.cfg
tr = f.train_idx
warm = int(c.warmup_s * f.sr)
seg = warm + int(c.segment_s * f.sr)
params = list(f.map.parameters()) + list(f.topo.shared.parameters())

def step():
    idx = f._draw_items(tr)
    X, Y = f._segments(idx, seg)
    raw = f.map(f._knob_tensor(idx))
    yh = f.topo(X, raw)
    P = torch.tensor([f.power[i] for i in idx])
    l = f._loss_rows(yh, Y, warm, P)
    loss = l.mean()
    loss.backward()
    return loss

step()
t = time.perf_counter()
for _ in range(3):
    step()
print("step s", (time.perf_counter() - t) / 3)
if len(sys.argv) > 2:
    with torch.profiler.profile() as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
