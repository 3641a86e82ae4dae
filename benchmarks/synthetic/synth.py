"""Synthetic ground truths for the fitter (scratch; the test file has its own copy)."""
import numpy as np, torch
from dsp.topologies import make_topology

def guitar_like(seconds, sr=48000, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * sr); y = np.zeros(n); t0 = 0
    while t0 < n:
        dur = int(rng.uniform(0.15, 0.6) * sr)
        f0 = 82.4 * 2 ** (rng.integers(0, 30) / 12)
        amp = 10 ** rng.uniform(-1.6, -0.3)
        tt = np.arange(min(dur * 3, n - t0)) / sr
        note = sum((0.7 ** h) * np.sin(2 * np.pi * f0 * (h + 1) * tt + rng.uniform(0, 6.28)) * np.exp(-tt * (2 + 1.5 * h)) for h in range(10))
        y[t0:t0 + len(tt)] += amp * note
        t0 += dur
    # a little noise at varying level
    env = 10 ** np.interp(np.arange(n), np.linspace(0, n, 9), rng.uniform(-3.5, -1.5, 9))
    y += env * rng.standard_normal(n)
    return y.astype(np.float32)

DRIVE_CONST = dict(gain_lp_hz=6000.0, clip_asym=0.25, clip_knee=2.5, dry_mix=1.0, tone_shelf_hz=1500.0, level_db=-4.0)
ATTACK_HZ = [60.0, 120.0, 250.0, 500.0, 900.0, 1500.0]

def drive_truth(k):
    d, a, b = k.get("Drive", 5.0), k.get("Attack", 3), k.get("Bright", 5.0)
    return dict(DRIVE_CONST, pre_gain_db=6 + 3.6 * d + 0.08 * d * d, input_hp_hz=ATTACK_HZ[int(round(a)) - 1],
                tone_lp_hz=2000.0 * 2 ** (b / 4), tone_shelf_db=-6 + 1.2 * b)

AMP_CONST = dict(in_hp_hz=30.0, tube1_bias=0.3, inter1_hp_hz=150.0, inter1_lp_hz=9000.0, stage2_gain_db=12.0,
                 tube2_bias=0.15, inter2_hp_hz=40.0, inter2_lp_hz=7000.0, sag_threshold=0.4, sag_time_s=0.03,
                 pa_level=1.0, presence_hz=3500.0, depth_hz=90.0, level_db=-6.0)

def amp_truth(k):
    g = lambda n: k.get(n, 5.0)
    return dict(AMP_CONST, pre_gain_db=2 + 3.5 * g("Pre_Gain"), tonestack_bass=g("Bass") / 10, tonestack_mid=g("Mid") / 10,
                tonestack_treble=g("Treble") / 10, post_gain_db=-12 + 2.0 * g("Post_Gain"), master_db=-6 + 2.4 * g("Master"),
                presence_db=-9 + 1.8 * g("Presence"), depth_db=-9 + 1.8 * g("Depth"),
                sag_depth=0.6 * k.get("Sag", 0.0), pa_bias=0.05 + 0.025 * k.get("Bias", 5.0),
                pa_crossover=0.05 + 0.02 * k.get("Bias_X", 5.0))

def render_truth(topology, truth_fn, settings, x, sr=48000, oversample=2):
    topo = make_topology(topology, sr, oversample)
    raw = torch.cat([topo.raw_from_physical(truth_fn(s)) for s in settings])
    with torch.no_grad():
        y = topo(torch.from_numpy(x.astype(np.float64)).expand(len(settings), -1), raw, exact=True)
    return y.numpy().astype(np.float32)


# ---- knobs and a UNIT-1-like plan ------------------------------------------------------
from dsp.twin import KnobSpec

AMP_HINTS = {"Pre_Gain": ["pre_gain_db"], "Bass": ["tonestack_bass"], "Mid": ["tonestack_mid"],
             "Treble": ["tonestack_treble"], "Post_Gain": ["post_gain_db"], "Master": ["master_db"],
             "Presence": ["presence_db"], "Depth": ["depth_db"], "Sag": ["sag_depth"], "Bias": ["pa_bias"],
             "Bias_X": ["pa_crossover"]}
AMP_SWEEP = ("Pre_Gain", "Bass", "Mid", "Treble", "Post_Gain", "Master", "Presence", "Depth")
AMP_CHAOS_LIMITS = {"Post_Gain": (1.0, 9.0), "Master": (2.0, 8.0), "Sag": (0.0, 8.0)}
# the UNIT 1 template's hints (unit_tui/templates/unit1.toml): only the tone stack has them
UNIT1_AMP_HINTED = ("Bass", "Mid", "Treble")


def amp_knobs(hints="all"):
    """hints: "all" (every knob hinted), "unit1" (as the UNIT 1 template) or "none"."""
    def aff(k):
        if hints == "all" or (hints == "unit1" and k in UNIT1_AMP_HINTED):
            return tuple(AMP_HINTS[k])
        return None
    return [KnobSpec(k, affects=aff(k), reference=(0.0 if k == "Sag" else 5.0)) for k in AMP_HINTS]


def drive_knobs(hints="all"):
    h = hints != "none"
    return [KnobSpec("Drive", affects=("pre_gain_db",) if h else None),
            KnobSpec("Attack", kind="switch", positions=(1, 2, 3, 4, 5, 6), reference=3,
                     affects=("input_hp_hz",) if h else None),
            KnobSpec("Bright", affects=("tone_lp_hz", "tone_shelf_db") if hints == "all" else None)]


def unit1_plan(knobs, sweep_names, n_chaos, holdout_every=10, seed=2002, chaos_limits=None):
    """Single sweeps of each sweep knob (5 values, every switch position; the reference
    setting once), then ``n_chaos`` chaos presets varying every modelled knob (uniform in
    its chaos limits); every ``holdout_every``-th chaos preset is held out (as
    unit_tui.training does). Returns (train settings, held-out settings)."""
    chaos_limits = chaos_limits or {}
    ref = {k.name: k.reference for k in knobs}
    sets = [dict(ref)]
    for k in knobs:
        if k.name not in sweep_names:
            continue
        vals = list(k.positions) if k.kind == "switch" else [0.0, 2.5, 5.0, 7.5, 10.0]
        for v in vals:
            s = dict(ref, **{k.name: float(v)})
            if s not in sets:
                sets.append(s)
    train, hold = list(sets), []
    for n in range(n_chaos):
        rng = np.random.default_rng([seed, n])
        s = {}
        for k in knobs:
            if k.kind == "switch":
                s[k.name] = float(rng.choice(k.positions))
            else:
                lo, hi = chaos_limits.get(k.name, (k.minimum, k.maximum))
                s[k.name] = round(float(rng.uniform(lo, hi)), 1)
        (hold if n % holdout_every == 0 else train).append(s)
    return train, hold
