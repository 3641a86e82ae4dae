"""A UNIT-1-size plan fitted end to end on synthetic ground truths: fit time, minutes
per capture, peak RSS, held-out ESR.

    python benchmarks/unit1_size.py [seconds=60] [hints=unit1|all]

The fits run on two processes where two cores are usable, as the product's do
(``UNIT_FIT_PROCESSES=1`` for one); the helper's peak RSS is printed and added.

Plan (as unit_tui's UNIT 1 template): pedal (drive) 16 captures: single sweeps of Drive
(5 values), Attack (6 positions), Bright (5 values), each with its own reference capture,
plus 1 chaos preset; 3 extra random settings held out. Amp: 40 sweeps (8 knobs x 5
values, the reference captured with each knob) + 50 chaos presets varying all 11 knobs
(Sag, Bias, Bias_X chaos-only), every 10th held out (5), plus 5 extra random settings
held out. One test signal (guitar-like, or dsp.testsignal's when available) for all.
Fit budgets: drive 150 s, amp 420 s (the fitter cuts its stages to fit).
"""
import gc, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent / "synthetic"))
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from synth import *  # noqa: F401,F403
from dsp.topologies import make_topology
from dsp.twin import FitConfig, TrainItem, fit_block

SR = 48000


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    """A memory figure of /proc/self/status (``VmRSS``, ``VmHWM``) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_now_mb():
    return _status_mb("VmRSS")


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so the fit's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_since_reset_mb():
    return _status_mb("VmHWM")


FIT_PEAKS: list[float] = []
PROCESS_PEAKS: list[float] = []  # clear_refs resets ru_maxrss too: kept before each reset

CACHE = "/tmp/unit1_bench_cache"


def render_chunked(topo, raw, x, chunk_s=10.0, warm_s=0.5):
    """The truth in 10 s chunks, each after 0.5 s of the preceding input (filters and
    sag settle in ~0.1 s): a 60 s render in one piece peaks at ~600 MB."""
    n, c, w = len(x), int(chunk_s * SR), int(warm_s * SR)
    y = np.zeros(n, np.float32)
    for s in range(0, n, c):
        a = max(0, s - w)
        seg = torch.from_numpy(x[a: s + c].astype(np.float64))[None]
        y[s: s + c] = topo(seg, raw, exact=True)[0, s - a:].numpy()
    return y  # rendered ground truths (minutes on a busy machine)


def render(topology, fn, settings, x):
    import hashlib, os
    topo = make_topology(topology, SR, 2)
    os.makedirs(CACHE, exist_ok=True)
    out = []
    with torch.no_grad():
        for s in settings:
            p = dict(fn(s))
            key = hashlib.sha1(repr((topology, sorted(p.items()), len(x), x[:1000].tobytes())).encode()).hexdigest()[:16]
            f = os.path.join(CACHE, key + ".npy")
            if os.path.exists(f):
                out.append(np.load(f))
                continue
            out.append(render_chunked(topo, topo.raw_from_physical(p), x))
            np.save(f, out[-1])
    return out


def sweep_plan(knobs, sweep_names, per_knob_reference=True):
    ref = {k.name: k.reference for k in knobs}
    sets = []
    for k in knobs:
        if k.name not in sweep_names:
            continue
        vals = list(k.positions) if k.kind == "switch" else [0.0, 2.5, 5.0, 7.5, 10.0]
        sets += [dict(ref, **{k.name: float(v)}) for v in vals]
    return sets


def bench(block, knobs, fn, train, hold, x, budget, cfg):
    t = time.time()
    ytr, yho = render(block, fn, train, x), render(block, fn, hold, x)
    # float16, as unit_tui.training.load_items keeps the captures for the fitter
    ytr, yho = np.asarray(ytr).astype(np.float16), np.asarray(yho).astype(np.float16)
    print(f"{block}: {len(train)} train + {len(hold)} held-out captures of {len(x)/SR:.0f} s "
          f"rendered in {time.time()-t:.0f} s", flush=True)
    items = [TrainItem(f"tr{i:03d}", s, x, ytr[i], SR) for i, s in enumerate(train)] + \
            [TrainItem(f"ho{i:03d}", s, x, yho[i], SR, holdout=True) for i, s in enumerate(hold)]
    last = [0.0]

    def prog(p):
        if time.time() - last[0] > 30 or p.step == p.total:
            last[0] = time.time()
            print(f"  [{p.elapsed_s:6.1f}s] {p.stage:12s} {p.step}/{p.total} train={p.train_esr} "
                  f"ho={p.holdout_esr} eta={p.eta_s} rss={rss_now_mb():.0f}/{rss_mb():.0f} MB", flush=True)
    print(f"  before fit: rss {rss_now_mb():.0f} MB (peak so far {rss_mb():.0f} MB)", flush=True)
    PROCESS_PEAKS.append(rss_mb())
    reset_peak_rss()  # the fit's peak, not that of rendering the synthetic targets in float64
    t = time.time()
    fb = fit_block(block, knobs, items, seed=0, on_progress=prog, time_budget_s=budget, config=cfg)
    dt = time.time() - t
    r = fb.report()
    print(f"{block}: fit {dt:.0f} s ({dt/60/len(train):.3f} min per capture), status {r['status']}; "
          f"train ESR median {r['train']['median']:.4f} worst {r['train']['worst']:.4f}; held-out ESR "
          f"median {r['holdout']['median']:.4f} worst {r['holdout']['worst']:.4f}; "
          f"peak RSS during the fit {peak_since_reset_mb():.0f} MB", flush=True)
    FIT_PEAKS.append(peak_since_reset_mb())
    print("  affects:", {k["name"]: k["affects"] for k in fb.knob_map["knobs"]}, flush=True)
    return dt, len(train), r


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    hints = sys.argv[2] if len(sys.argv) > 2 else "unit1"
    x = guitar_like(seconds, SR, seed=7)
    total, n_total = 0.0, 0
    # pedal
    dk = drive_knobs(hints)
    train = sweep_plan(dk, ("Drive", "Attack", "Bright"))
    _, extra = unit1_plan(dk, (), 1 + 3, holdout_every=1, seed=77)
    train, hold = train + extra[:1], extra[1:]
    cfg = FitConfig(per_capture_steps=250, joint_steps=100, segment_s=0.25)
    dt, n, _ = bench("drive", dk, drive_truth, train, hold, x, 150.0, cfg)
    total, n_total = total + dt, n_total + n
    gc.collect()
    # amp
    ak = amp_knobs(hints)
    train = sweep_plan(ak, AMP_SWEEP)
    tr_c, ho_c = unit1_plan(ak, (), 50, holdout_every=10, chaos_limits=AMP_CHAOS_LIMITS)
    _, extra = unit1_plan(ak, (), 5, holdout_every=1, seed=99, chaos_limits=AMP_CHAOS_LIMITS)
    cfg = FitConfig(per_capture_steps=600, joint_steps=250, segment_s=0.25)
    dt, n, _ = bench("amp", ak, amp_truth, train + tr_c, ho_c + extra, x, 420.0, cfg)
    total, n_total = total + dt, n_total + n
    # the fits' helper processes (dsp.parallel; ended by now): the largest one's own peak
    # (from its /proc status; RUSAGE_CHILDREN would carry this process's size at the
    # fork). It runs beside the fit, so the fit's memory is the sum of the two peaks
    from dsp.parallel import closed_helpers_peak_rss_mb, default_processes
    helper = closed_helpers_peak_rss_mb()
    print(f"UNIT-1-size rig: {n_total} training captures of {seconds:.0f} s fitted in {total/60:.1f} min "
          f"({total/60/n_total:.3f} min per capture) on {default_processes()} process(es); peak RSS during "
          f"the fits {max(FIT_PEAKS):.0f} MB"
          + (f" + the helper's {helper:.0f} MB = {max(FIT_PEAKS) + helper:.0f} MB" if helper else "")
          + f" (process peak, incl. rendering the synthetic targets: {max(PROCESS_PEAKS + [rss_mb()]):.0f} MB)", flush=True)
