"""Fidelity benchmark: how well the twin follows a real block's knobs at settings never captured.

The "real" blocks are Debian's Guitarix LV2 plugins rendered offline with ``lv2file``
(see ``benchmarks/lv2_render.py`` and the rigs in ``benchmarks/rigs/``). For each block:

1. create a project from ``benchmarks/rigs/<key>.toml`` in ``WORK/<key>`` (generated
   test signal of ``--signal-seconds``);
2. capture every planned setting through ``unit-trainer capture --command
   'python benchmarks/lv2_render.py <key> {input} {output} {setting_json}'``;
3. train the block with ``unit_tui.training.train_block`` in a child process (so its
   wall time and peak RSS are the training's own);
4. score ``--settings`` seeded random settings that were never captured: the plugin's
   render at that setting (aligned by the latency measured from the blips, as the
   capture checks measure it for the trainer) against the twin's render
   (``FittedBlock.render``), ESR = sum((y - y_hat)^2) / sum(y^2) after the first 0.5 s;
   and the "nearest captured setting" baseline: the capture (plugin render) at the
   training setting nearest in normalised knob distance against the plugin's render at
   the random setting.

It prints its figures (and writes them with ``--json``); it asserts nothing.

    python benchmarks/fidelity.py --plugin ds1 --signal-seconds 32 --minutes 3
    python benchmarks/fidelity.py --minutes 6 --json bench.json     # all three blocks
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import lv2_render  # noqa: E402

SKIP_S = 0.5           # the test signal's leading silence, left out of every ESR
DEFAULT_SETTINGS = 12
DEFAULT_SIGNAL_S = 32.0
NAM_VERDICTS = ((0.01, "great"), (0.035, "not bad"), (0.1, "may sound OK"))
FIR_EVERY = 100         # FitConfig.output_fir_every's default (not imported: torch loads lazily)
# The targets: held-out median / worst ESR per topology.
TARGETS = {"drive": (0.01, 0.05), "amp": (0.03, 0.1)}


def verdict(esr: float | None) -> str:
    """NAM's words for an ESR (below 0.01 great, 0.035 not bad, 0.1 may sound OK)."""
    if esr is None or not math.isfinite(esr):
        return "n/a"
    for limit, word in NAM_VERDICTS:
        if esr < limit:
            return word
    return "poor"


def esr(y: np.ndarray, y_hat: np.ndarray, start: int, stop: int) -> float:
    y = np.asarray(y[start:stop], np.float64)
    d = y - np.asarray(y_hat[start:stop], np.float64)
    return float(np.sum(d * d) / max(np.sum(y * y), 1e-20))


def guitar_spans(layout, sample_rate: float, stop: int) -> list[tuple[int, int]]:
    """Sample ranges of the layout's guitar segments (``dsp.testsignal.GUITAR_KINDS``: the
    phrases and the repeated phrase), cut at ``stop`` (the layout's own
    ``SignalLayout.guitar_spans``, which the trainer's report uses too)."""
    if int(sample_rate) != int(layout.sample_rate):
        raise ValueError(f"the layout is at {layout.sample_rate} Hz, the render at {sample_rate}")
    return list(layout.guitar_spans(stop))


def esr_spans(y: np.ndarray, y_hat: np.ndarray, spans: list[tuple[int, int]]) -> float | None:
    """One ESR over the union of ``spans`` (error energy over signal energy, summed);
    None without spans (a test signal with no guitar segment, e.g. an unknown one)."""
    if not spans:
        return None
    e = sum(float(np.sum((np.asarray(y[a:b], np.float64) - np.asarray(y_hat[a:b], np.float64)) ** 2))
            for a, b in spans)
    return e / max(sum(float(np.sum(np.asarray(y[a:b], np.float64) ** 2)) for a, b in spans), 1e-20)


def _mb(kib: float) -> float:
    return kib / 1024.0


# ------------------------------------------------------------------------------ project


def make_project(key: str, work: Path, signal_seconds: float, fresh: bool):
    """Create ``work/<key>`` from the benchmark rig, or reuse it when it matches."""
    from unit_tui.project import Project

    root = work / key
    rig_file = lv2_render.rig_path(key)
    rig_text = rig_file.read_text("utf-8")
    if root.exists() and fresh:
        shutil.rmtree(root)
    if root.exists() and any(root.iterdir()):
        project = Project.open(root)
        same_rig = project.rig_path.read_text("utf-8") == rig_text
        seconds = project.load_input().audio.size / project.rig.sample_rate
        if not same_rig or abs(seconds - signal_seconds) > 0.01:
            raise SystemExit(
                f"fidelity: {root} holds a project with another rig or a {seconds:g} s signal; "
                "pass --fresh to start it over (or another --work).")
        return project, False
    project = Project.create(root, rig_text, source=str(rig_file), signal_seconds=signal_seconds)
    return project, True


def capture_all(project, key: str) -> dict:
    """Run ``unit-trainer capture --command`` (the CLI, as a user would) for every missing capture."""
    template = (f"{shlex.quote(sys.executable)} {shlex.quote(str(BENCH_DIR / 'lv2_render.py'))} "
                f"{key} {{input}} {{output}} {{setting_json}}")
    cmd = [sys.executable, "-m", "unit_tui.cli", "capture", str(project.root), "--command", template]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        print(f"  capture exited with {proc.returncode}:\n{tail}")
    status = project.scan()
    states = [s for s in status.states if s.capture is not None]
    ready = [s for s in states if s.status.value == "ready"]
    problems = [f"{s.capture.filename}: {s.status.value} ({s.reason})" for s in states if s.status.value != "ready"]
    return {"seconds": seconds, "planned": len(states), "ready": len(ready), "problems": problems,
            "command": template, "returncode": proc.returncode}


# ------------------------------------------------------------------------------ training


def train_child(args) -> int:
    """Child process: train one block, write the figures as JSON (``--train-child``)."""
    import torch

    torch.set_num_threads(1)
    from unit_tui.project import Project
    from unit_tui.training import train_block

    project = Project.open(args.project)
    budget_s = None if args.minutes is None else args.minutes * 60.0
    # Hard stop: the fitter is asked to meet its budget; if it overruns by far, cancel it.
    hard_s = None if budget_s is None else 1.5 * budget_s + 60.0
    last = [0.0]
    t0 = time.monotonic()

    def progress(ev):
        now = time.monotonic() - t0
        if now - last[0] >= args.every or ev.stage == "report" and ev.step == ev.total:
            last[0] = now
            fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
            print(f"    [{now:6.1f}s] {ev.stage:<11} {ev.step}/{ev.total} loss={fmt(ev.loss)} "
                  f"train={fmt(ev.train_esr)} holdout={fmt(ev.holdout_esr)}", flush=True)

    def should_stop():
        return hard_s is not None and time.monotonic() - t0 > hard_s

    from dsp.fit import FitConfig

    config = FitConfig(variants=parse_variants(args.variant), output_fir=not args.no_output_fir,
                       output_fir_every=args.output_fir_every,
                       **({"oversample": args.oversample} if args.oversample else {}), **parse_fit(args.fit))
    fitted, meta = train_block(project, args.block, minutes=args.minutes, seed=args.seed, fresh=True,
                               on_progress=progress, should_stop=should_stop, config=config)
    fit_s = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # the fit's helper processes (dsp.parallel), ended and waited for by now: the
    # largest one's own peak (read from its /proc status before it exited: wait4's
    # figure for it would carry this process's size at the fork) and all their CPU time
    ruc = resource.getrusage(resource.RUSAGE_CHILDREN)
    from dsp.parallel import closed_helpers_peak_rss_mb, default_processes

    cfg_proc = config.processes or default_processes()
    out = {"fit_seconds": fit_s, "peak_rss_mb": _mb(ru.ru_maxrss), "cpu_seconds": ru.ru_utime + ru.ru_stime,
           "helper_peak_rss_mb": closed_helpers_peak_rss_mb() if cfg_proc > 1 else 0.0,
           "helper_cpu_seconds": ruc.ru_utime + ruc.ru_stime, "processes": cfg_proc,
           "status": fitted.status, "report": fitted.report(), "meta": meta,
           "torch_threads": torch.get_num_threads()}
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    return 0


def parse_variants(pairs: list[str] | None) -> dict | None:
    """``["drive_section=1", ...]`` -> ``{"drive_section": 1.0}`` (None when empty)."""
    out = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise SystemExit(f"fidelity: --variant {p!r}: write NAME=VALUE, e.g. drive_section=1") from None
        if not sep:
            raise SystemExit(f"fidelity: --variant {p!r}: write NAME=VALUE, e.g. drive_section=1")
    return out or None


def parse_fit(pairs: list[str] | None) -> dict:
    """``["per_capture_frac=0.35"]`` -> ``{"per_capture_frac": 0.35}`` (FitConfig fields,
    numbers; an int field keeps its type)."""
    from dataclasses import fields

    from dsp.fit import FitConfig

    types = {f.name: f.type for f in fields(FitConfig)}
    out = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        k = k.strip()
        if not sep or k not in types:
            raise SystemExit(f"fidelity: --fit {p!r}: write FIELD=VALUE with a FitConfig field, e.g. "
                             "per_capture_frac=0.35")
        try:
            out[k] = int(v) if types[k] in (int, "int") else float(v)
        except ValueError:
            raise SystemExit(f"fidelity: --fit {p!r}: {k} takes a number") from None
    return out


def train(project, block_id: str, minutes: float | None, seed: int, every: float,
          variants: list[str] | None = None, no_output_fir: bool = False,
          output_fir_every: int = FIR_EVERY, oversample: int | None = None,
          fit: list[str] | None = None) -> dict:
    """Train in a child process; its own peak RSS (``wait4``) and wall time."""
    with tempfile.TemporaryDirectory(prefix="unit-fid") as tmp:
        out = Path(tmp, "train.json")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--train-child", "--project", str(project.root),
               "--block", block_id, "--seed", str(seed), "--every", str(every), "--out", str(out)]
        if minutes is not None:
            cmd += ["--minutes", str(minutes)]
        for v in variants or ():
            cmd += ["--variant", v]
        for v in fit or ():
            cmd += ["--fit", v]
        if no_output_fir:
            cmd.append("--no-output-fir")
        cmd += ["--output-fir-every", str(output_fir_every)]
        if oversample:
            cmd += ["--oversample", str(oversample)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"fidelity: training {block_id} failed (exit {proc.returncode}); see its output above.")
        res = json.loads(out.read_text())
    res["child_wall_seconds"] = wall
    # the child's own peak (wait4: the largest of it and its waited-for helpers), plus its
    # helpers' when the fit ran on several processes: they run side by side, so the
    # figure printed is the sum of the two peaks (at most (processes - 1) x the helper's)
    res["child_peak_rss_mb"] = (res["peak_rss_mb"] + (res.get("processes", 1) - 1) * res.get("helper_peak_rss_mb", 0.0)
                                if res.get("helper_peak_rss_mb") else _mb(ru.ru_maxrss))
    return res


# ------------------------------------------------------------------------------ scoring


def random_settings(block, n: int, seed: int, key: str, captured: list[dict]) -> list[dict]:
    """``n`` seeded random settings within each knob's chaos limits, none of them captured."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    out: list[dict] = []
    seen = [tuple(sorted(c.items())) for c in captured]
    while len(out) < n:
        s = {}
        for k in block.knobs:
            if not k.modelled:
                s[k.name] = float(k.fixed)
            elif k.kind == "switch":
                choices = [p for p in k.positions if k.chaos_limits[0] <= p <= k.chaos_limits[1]]
                s[k.name] = float(choices[int(rng.integers(len(choices)))])
            else:
                s[k.name] = float(np.round(rng.uniform(*k.chaos_limits), 2))
        if tuple(sorted(s.items())) not in seen:
            out.append(s)
            seen.append(tuple(sorted(s.items())))
    return out


def knob_distance(block, a: dict, b: dict) -> float:
    """Euclidean distance over the modelled knobs, each normalised by its range."""
    d = 0.0
    for k in block.modelled_knobs:
        span = (k.maximum - k.minimum) or 1.0
        d += ((a[k.name] - b[k.name]) / span) ** 2
    return math.sqrt(d)


def score(project, key: str, block, n_settings: int, seed: int) -> dict:
    """Twin vs plugin, and nearest-capture vs plugin, at never-captured settings."""
    import torch

    torch.set_num_threads(1)
    from dsp.fit import shift_signal
    from dsp.testsignal import measure_latency
    from unit_tui.audio_io import read_capture
    from unit_tui.training import load_model

    spec = lv2_render.load_spec(key)
    model = load_model(project, block.id)
    x = project.load_input().audio
    sr = project.rig.sample_rate
    layout = project.layout()
    start = int(SKIP_S * sr)
    modelled = [k.name for k in block.modelled_knobs]

    holdout = {it["name"] for it in model.report().get("items", []) if it.get("holdout")}
    states = [s for s in project.scan().states if s.capture is not None and s.capture.block_id == block.id]
    all_settings = [s.capture.setting for s in states]
    train_caps = [s for s in states if s.status.value == "ready"
                  and s.capture.filename.removesuffix(".wav") not in holdout]
    settings = random_settings(block, n_settings, seed, key, all_settings)

    # The plugin's latency is one number for every setting: the one the fit found (the
    # twin was trained against it). Per-setting onsets (the blips) move with the filters
    # by a few samples and would misalign a causal twin at high frequencies.
    lat_block = model.latency_samples
    rows = []
    for i, setting in enumerate(settings, start=1):
        t0 = time.monotonic()
        y = lv2_render.render(spec, x, sr, setting)
        lat = measure_latency(y, x, layout, sr)
        lat_used = float(lat_block) if lat_block is not None else (0.0 if lat is None else float(lat))
        y_al = shift_signal(np.asarray(y, np.float64), lat_used)
        stop = y_al.size - int(math.ceil(max(lat_used, 0.0)))
        y_hat = model.render({k: setting[k] for k in modelled}, x, sr)
        e_twin = esr(y_al, y_hat, start, stop)
        spans = guitar_spans(layout, sr, stop)
        g_twin = esr_spans(y_al, y_hat, spans)

        near = min(train_caps, key=lambda s: knob_distance(block, s.capture.setting, setting))
        y_near = read_capture(project.path(near.relpath)).audio
        # the same plugin, so the same latency: both are advanced by it
        lat_n = lat_used
        y_near_al = shift_signal(np.asarray(y_near[: x.size], np.float64), lat_n)
        stop_b = min(stop, y_near_al.size - int(math.ceil(max(lat_n, 0.0))))
        e_base = esr(y_al, y_near_al, start, stop_b)
        g_base = esr_spans(y_al, y_near_al, guitar_spans(layout, sr, stop_b))
        rows.append({"setting": setting, "latency_samples": lat, "twin_esr": e_twin,
                     "baseline_esr": e_base, "twin_guitar_esr": g_twin, "baseline_guitar_esr": g_base,
                     "nearest": near.capture.filename,
                     "nearest_distance": knob_distance(block, near.capture.setting, setting),
                     "seconds": time.monotonic() - t0})
        knobs = " ".join(f"{k}={setting[k]:g}" for k in modelled)
        print(f"    #{i:02d} {knobs:<58} lat {lat_used:5.1f}  twin {e_twin:8.5f} (guitar {_fmt(g_twin)})  "
              f"nearest {e_base:8.5f} (guitar {_fmt(g_base)}; {near.capture.filename.removesuffix('.wav')}, "
              f"d={rows[-1]['nearest_distance']:.2f})", flush=True)
    # Alignment check: the same pipeline at two captured training settings should give
    # about the trainer's own per-item ESR (it scores the whole signal, we skip 0.5 s).
    trainer_esr = {it["name"]: it.get("esr") for it in model.report().get("items", [])}
    checks = []
    picks = [s for s in train_caps if s.capture.kind == "sweep"][:1] + [s for s in train_caps if s.capture.kind == "chaos"][:1]
    for s in picks:
        setting = s.capture.setting
        y = lv2_render.render(spec, x, sr, setting)
        lat = measure_latency(y, x, layout, sr)
        lat_used = float(lat_block) if lat_block is not None else (0.0 if lat is None else float(lat))
        y_al = shift_signal(np.asarray(y, np.float64), lat_used)
        stop = y_al.size - int(math.ceil(max(lat_used, 0.0)))
        y_hat = model.render({k: setting[k] for k in modelled}, x, sr)
        name = s.capture.filename.removesuffix(".wav")
        checks.append({"capture": name, "esr_here": esr(y_al, y_hat, start, stop),
                       "esr_trainer": trainer_esr.get(name), "latency_here": lat,
                       "latency_capture": s.result.latency_samples})
        c = checks[-1]
        print(f"    alignment check at captured {name}: ESR here {c['esr_here']:.5f}, trainer's report "
              f"{_fmt(c['esr_trainer'])} (latency {lat_used:g} here, {c['latency_capture']} at capture)", flush=True)
    return {"settings": rows, "alignment_checks": checks}


def summarise(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "mean": float(np.mean(v)), "worst": float(np.max(v)),
            "count": int(v.size), "verdict": verdict(float(np.median(v))),
            "worst_verdict": verdict(float(np.max(v)))}


# ------------------------------------------------------------------------------ driver


def run_block(key: str, args) -> dict:
    spec = lv2_render.load_spec(key)
    print(f"== {key}: {spec.name} ({spec.uri})", flush=True)
    project, created = make_project(key, args.work, args.signal_seconds, args.fresh)
    block = project.rig.blocks[0]
    print(f"  project {project.root} ({'created' if created else 'reused'}; "
          f"{args.signal_seconds:g} s test signal at {project.rig.sample_rate} Hz)", flush=True)

    from dsp.structure import check_structure

    try:  # a misspelt --variant stops here, before the captures and the training child
        check_structure(block.topology, parse_variants(args.variant) or {})
    except ValueError as exc:
        raise SystemExit(f"fidelity: {key}: --variant: {exc}") from None

    cap = capture_all(project, key)
    print(f"  capture: {cap['ready']}/{cap['planned']} ready in {cap['seconds']:.1f} s", flush=True)
    for p in cap["problems"]:
        print(f"    not ready: {p}")
    if cap["ready"] == 0:
        raise SystemExit(f"fidelity: {key}: no capture is ready; nothing to train on.")

    saved = args.work / f"{key}.train.json"
    if args.score_only:
        if not saved.is_file():
            raise SystemExit(f"fidelity: --score-only: no {saved}; run once without it.")
        tr = json.loads(saved.read_text())
        print(f"  (--score-only: the model and training figures of the last run, {saved})", flush=True)
    else:
        print(f"  training {block.id} ({block.topology}), budget "
              f"{'none' if args.minutes is None else f'{args.minutes:g} min'} ...", flush=True)
        tr = train(project, block.id, args.minutes, args.seed, args.every, args.variant, args.no_output_fir,
                   args.output_fir_every, args.oversample, args.fit)
        tr["minutes_budget"] = args.minutes
        saved.write_text(json.dumps(tr, indent=1, default=float))
    rep = tr["report"]
    n_train = sum(1 for it in rep.get("items", []) if not it.get("holdout"))
    n_hold = sum(1 for it in rep.get("items", []) if it.get("holdout"))

    print(f"  scoring {args.settings} random never-captured settings (seed {args.seed}):", flush=True)
    sc = score(project, key, block, args.settings, args.seed)
    twin = summarise([r["twin_esr"] for r in sc["settings"]])
    base = summarise([r["baseline_esr"] for r in sc["settings"]])
    wins = sum(1 for r in sc["settings"] if r["twin_esr"] < r["baseline_esr"])
    guitar = [r for r in sc["settings"] if r["twin_guitar_esr"] is not None and r["baseline_guitar_esr"] is not None]
    fit_min = tr["fit_seconds"] / 60.0
    result = {
        "key": key, "plugin": spec.name, "uri": spec.uri, "block": block.id, "topology": block.topology,
        "signal_seconds": args.signal_seconds, "minutes_budget": tr.get("minutes_budget", args.minutes), "seed": args.seed,
        "captures": {k: cap[k] for k in ("planned", "ready", "problems", "seconds")},
        "train_captures": n_train, "trainer_holdout_captures": n_hold,
        "fit_seconds": tr["fit_seconds"], "fit_status": tr["status"],
        "peak_rss_mb": tr["child_peak_rss_mb"], "fit_cpu_seconds": tr["cpu_seconds"] + tr.get("helper_cpu_seconds", 0.0),
        "fit_processes": tr.get("processes", 1),
        "minutes_per_capture": fit_min / max(n_train, 1),
        "trainer_report": {"train": rep.get("train"), "holdout": rep.get("holdout")},
        "twin": twin, "baseline": base, "twin_beats_baseline": wins, "settings": sc["settings"],
        # the same settings scored on the guitar segments only (GUITAR_KINDS): what a
        # player hears, where the whole signal's ESR is mostly its loud sweep and noise
        "twin_guitar": summarise([r["twin_guitar_esr"] for r in guitar]) if guitar else None,
        "baseline_guitar": summarise([r["baseline_guitar_esr"] for r in guitar]) if guitar else None,
        "twin_beats_baseline_guitar": sum(1 for r in guitar if r["twin_guitar_esr"] < r["baseline_guitar_esr"]),
        "alignment_checks": sc["alignment_checks"],
    }
    print_block(result)
    return result


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.5f}"


def print_block(r: dict) -> None:
    t, b = r["twin"], r["baseline"]
    med_t, worst_t = TARGETS.get(r["topology"], (None, None))
    trep = r["trainer_report"]
    print(f"  -- {r['key']} ({r['plugin']}, {r['topology']}) --")
    print(f"  held-out ESR, twin     : median {t['median']:.5f} ({t['verdict']}), worst {t['worst']:.5f} "
          f"({t['worst_verdict']}), mean {t['mean']:.5f}, n={t['count']}")
    print(f"  held-out ESR, nearest  : median {b['median']:.5f} ({b['verdict']}), worst {b['worst']:.5f} "
          f"({b['worst_verdict']}), mean {b['mean']:.5f}")
    print(f"  twin better than nearest capture at {r['twin_beats_baseline']}/{t['count']} settings")
    tg, bg = r.get("twin_guitar"), r.get("baseline_guitar")
    if tg and bg:
        print(f"  same, guitar segments  : twin median {tg['median']:.5f} ({tg['verdict']}), worst {tg['worst']:.5f}; "
              f"nearest median {bg['median']:.5f}, worst {bg['worst']:.5f}; twin better at "
              f"{r['twin_beats_baseline_guitar']}/{tg['count']}")
    if med_t is not None:
        print(f"  issue targets ({r['topology']}): median <= {med_t:g}, worst <= {worst_t:g}, beat the baseline "
              f"(reported, not asserted)")
    if trep.get("train"):
        print(f"  trainer's own report   : train ESR median {_fmt(trep['train']['median'])} worst "
              f"{_fmt(trep['train']['worst'])}; held-out chaos presets median "
              f"{_fmt((trep.get('holdout') or {}).get('median'))} worst {_fmt((trep.get('holdout') or {}).get('worst'))}")
    print(f"  fit wall time          : {r['fit_seconds']:.1f} s ({r['fit_status']}; budget "
          f"{'none' if r['minutes_budget'] is None else str(r['minutes_budget']) + ' min'}), "
          f"CPU {r['fit_cpu_seconds']:.1f} s on {r.get('fit_processes', 1)} process(es)")
    print(f"  peak RSS (training)    : {r['peak_rss_mb']:.0f} MB"
          + (" (the processes' peaks summed)" if r.get("fit_processes", 1) > 1 else ""))
    print(f"  fit minutes per capture: {r['minutes_per_capture']:.3f} ({r['train_captures']} training captures of "
          f"{r['signal_seconds']:g} s; {r['trainer_holdout_captures']} chaos presets held out by the trainer)")


def print_summary(results: list[dict]) -> None:
    print("\n== summary (ESR at never-captured settings; NAM: <0.01 great, <0.035 not bad, <0.1 may sound OK)")
    print(f"  {'block':<10} {'topology':<8} {'twin med':>9} {'twin worst':>10} {'near med':>9} {'near worst':>10} "
          f"{'wins':>6} {'gtr med':>8} {'gtr worst':>9} {'fit s':>7} {'RSS MB':>7} {'min/cap':>8}")
    for r in results:
        print(f"  {r['key']:<10} {r['topology']:<8} {r['twin']['median']:9.5f} {r['twin']['worst']:10.5f} "
              f"{r['baseline']['median']:9.5f} {r['baseline']['worst']:10.5f} "
              f"{r['twin_beats_baseline']:>3}/{r['twin']['count']:<2} "
              f"{_fmt((r.get('twin_guitar') or {}).get('median')):>8} {_fmt((r.get('twin_guitar') or {}).get('worst')):>9} "
              f"{r['fit_seconds']:7.1f} "
              f"{r['peak_rss_mb']:7.0f} {r['minutes_per_capture']:8.3f}")


def environment() -> dict:
    env = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "python": sys.version.split()[0], "cpus": os.cpu_count()}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", "guitarix-lv2", "lv2file"],
                             capture_output=True, text=True).stdout
        env["packages"] = out.strip().splitlines()
    except OSError:
        pass
    try:
        env["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                    text=True).stdout.strip()
    except OSError:
        pass
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plugin", action="append", choices=lv2_render.PLUGIN_KEYS,
                   help="benchmark only this block (repeat for several); default: all three")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per block (default 5)")
    p.add_argument("--variant", action="append", metavar="NAME=VALUE",
                   help="set a structural variant instead of trying it at init (FitConfig.variants), "
                        "e.g. --variant drive_section=1; repeatable")
    p.add_argument("--settings", type=int, default=DEFAULT_SETTINGS,
                   help=f"random never-captured settings scored per block (default {DEFAULT_SETTINGS})")
    p.add_argument("--signal-seconds", type=float, default=DEFAULT_SIGNAL_S,
                   help=f"length of the generated test signal, >= 32 (default {DEFAULT_SIGNAL_S:g})")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "unit-fidelity",
                   help="work folder for the projects (default: $TMPDIR/unit-fidelity)")
    p.add_argument("--fresh", action="store_true", help="delete WORK/<key> first (else a matching project is reused)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit and of the random settings")
    p.add_argument("--every", type=float, default=15.0, help="seconds between training progress lines")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument("--no-output-fir", action="store_true",
                   help="never give the amp its output FIR (FitConfig.output_fir=False): for comparison")
    p.add_argument("--output-fir-every", type=int, default=FIR_EVERY, metavar="STEPS",
                   help=f"joint-fit steps between re-solves of the output FIR (FitConfig.output_fir_every, "
                        f"default {FIR_EVERY}; 0: only at the joint fit's start and end)")
    p.add_argument("--oversample", type=int, choices=(1, 2, 4), default=None,
                   help="the twin's oversampling (FitConfig.oversample; default 2): 1 runs the "
                        "shapers at the base rate, as Guitarix's tube tables do")
    p.add_argument("--fit", action="append", metavar="FIELD=VALUE",
                   help="set a FitConfig field for this run (numbers only), e.g. --fit per_capture_frac=0.35; "
                        "repeatable (for development)")
    p.add_argument("--score-only", action="store_true",
                   help="do not train: score the model saved by the last run in WORK (for development)")
    # internal: the training child process
    p.add_argument("--train-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--project", help=argparse.SUPPRESS)
    p.add_argument("--block", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train_child:
        return train_child(args)
    if args.signal_seconds < 32:
        print("fidelity: --signal-seconds must be at least 32", file=sys.stderr)
        return 2
    if args.settings < 1:
        print("fidelity: --settings must be at least 1", file=sys.stderr)
        return 2
    parse_variants(args.variant)  # a malformed --variant stops here, not in the training child
    if shutil.which(lv2_render.LV2FILE) is None:
        print("fidelity: lv2file not found (apt-get install lv2file guitarix-lv2)", file=sys.stderr)
        return 2
    args.work = args.work.expanduser().resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    keys = args.plugin or list(lv2_render.PLUGIN_KEYS)
    env = environment()
    argv_shown = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(f"fidelity benchmark {env['date']} (git {env.get('git', '?')}, torch {env.get('torch', '?')}, "
          f"{env['cpus']} CPUs; {', '.join(env.get('packages', []))})")
    print(f"  python benchmarks/fidelity.py {argv_shown}", flush=True)
    results = [run_block(k, args) for k in keys]
    print_summary(results)
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "argv": argv_shown, "blocks": results},
                                        indent=1, default=float))
        print(f"  figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
