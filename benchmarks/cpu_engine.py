"""CPU cost of the exported C++ engine (export/cpp/unit_engine.h), per sample.

For a drive (pedal) and an amp model it builds ``export/cpp/tools/unit_render.cpp``
with ``g++ -O3 -march=x86-64-v2 -std=c++17`` and measures

* instructions per sample: ``valgrind --tool=callgrind`` instruction count (Ir) for
  2 s of audio at 48 kHz, minus the count for set-up only (0 s: load model.json,
  prepare), divided by the samples. Repeatable to a few instructions;
* the same while a knob is automated over its whole range every second (smoothing on:
  the knob map and the coefficients are recomputed every 32 samples);
* ns per sample: wall time of ``process()`` over 10 s of audio, best of 3 runs (this
  machine's cores are shared: read it as an indication).

Anti-aliasing on: the models run with their oversampling (2x with the 41-tap half-band
FIR of ``dsp.shapers.oversampling_fir``, taken from model.json like any export).
Targets (issue 5): pedal <= 400 and amp <= 1,400 instructions per sample. For scale,
measured with the same method: NAM's standard WaveNet ~28,300 instructions and
1,350 ns per sample (x86-64-v2), NAM's smallest LSTM ~1,900 instructions.

Models: fitted twins (``--drive`` / ``--amp``: a ``*.twin.json`` file or a
``model.json``), else the UNIT 1 template rig's pedal (Horizon Drive, drive) and amp
(Invective, amp) with random knob maps (same knobs, topologies and oversampling: the
cost does not depend on the fitted values, except through the soft clip's knee), with
every optional section on (the worst case: all-pass, the drive's second input
high-pass and blend tone, the amp's output low-pass, second all-pass pair and output
FIR of 240 taps; ``--no-output-fir`` leaves the FIR out).

    python benchmarks/cpu_engine.py
    python benchmarks/cpu_engine.py --drive proj/.unit/models/01_DS1.twin.json --json cpu.json

It prints its figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsp import export

FLAGS = ["-O3", "-march=x86-64-v2", "-std=c++17", "-DNDEBUG"]
TARGETS = {"drive": 400, "amp": 1400}


def _unit1_models(drive_section: bool = False, output_fir: bool = True,
                  band_chain: bool = False) -> tuple[dict, object]:
    """Synthetic twins (random knob maps) of the UNIT 1 template rig's pedal and amp:
    the rig's knobs, topologies and 2x oversampling; fitted values do not change the cost
    except through the soft clip's knee."""
    from dsp.controls import KnobDef
    from dsp.topologies import TOPOLOGIES
    from unit_tui.rig import parse_rig

    rig = parse_rig((ROOT / "unit_tui" / "templates" / "unit1.toml").read_text(), source="unit1.toml")
    out = {}
    for i, b in enumerate(rig.blocks):
        knobs = [KnobDef(k.name, k.kind, k.minimum, k.maximum, tuple(float(p) for p in k.positions),
                         k.reference, k.affects) for k in b.knobs if k.modelled]
        # the worst case a fit can choose: every optional section on (output low-pass,
        # all-pass, band split, the blend tone, the shaper tables, and the tone stack between the stages,
        # which costs the same); the drive section, which a fit has only when asked,
        # with drive_section; the band chain (the chain once per band, five bands) with
        # band_chain
        on = {k: 1.0 for k in TOPOLOGIES[b.topology].switches()}
        if b.topology == "amp":
            on["tonestack_position"] = 1.0
            on["blend_tone"] = 1.0
            on["shaper_tables"] = 1.0
            on["drive_section"] = float(drive_section)
            on["band_chain"] = float(band_chain)
            on["output_fir"] = float(output_fir)  # 240 taps at 48 kHz (synthetic_block)
        out[b.topology] = (b.id, export.synthetic_block(b.topology, knobs, seed=i + 1, shared=on))
    return out, rig


def _model_path(kind: str, given: str | None, tmp: Path, drive_section: bool = False,
                output_fir: bool = True, band_chain: bool = False) -> tuple[Path, str]:
    from dsp.twin import FittedBlock

    if given:
        p = Path(given)
        d = json.loads(p.read_text())
        if d.get("format") == export.MODEL_FORMAT:
            return p, str(p)
        models, rig, label = {p.stem.split(".")[0]: FittedBlock.from_dict(d)}, None, str(p)
    else:
        unit1, rig = _unit1_models(drive_section, output_fir, band_chain)
        name, block = unit1[kind]
        models, label = {name: block}, f"UNIT 1 template {name}, synthetic map"
        if kind == "amp" and drive_section:
            label += ", drive section on"
        if kind == "amp" and band_chain:
            label += ", band chain on (five chains)"
        if kind == "amp":
            label += ", output FIR on (240 taps)" if output_fir else ", output FIR off"
    out = tmp / f"{kind}.model.json"
    out.write_text(export.dumps_model(export.model_document(models, rig)))
    return out, label


def _callgrind_ir(exe: Path, model: Path, seconds: float, tmp: Path, extra=()) -> int:
    out = tmp / f"cg.{seconds}.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(exe), str(model),
                    "--bench", str(seconds), "48000", *extra], check=True, capture_output=True, text=True)
    text = out.read_text()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if not m:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(m.group(1))


def _ns_per_sample(exe: Path, model: Path, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        r = subprocess.run([str(exe), str(model), "--bench", "10", "48000"], check=True,
                           capture_output=True, text=True)
        best = min(best, float(r.stdout.split()[1]))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drive", help="fitted drive: *.twin.json or model.json")
    ap.add_argument("--amp", help="fitted amp: *.twin.json or model.json")
    ap.add_argument("--drive-section", action="store_true",
                    help="the synthetic amp with its drive section on (FitConfig.variants)")
    ap.add_argument("--band-chain", action="store_true",
                    help="the synthetic amp with its band chain on: the chain once per band (FitConfig.variants)")
    ap.add_argument("--no-output-fir", action="store_true",
                    help="the synthetic amp without its output FIR (a fit keeps it only where it helps)")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio for the callgrind count")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--cxx", default="g++", help="compiler (g++, clang++: Xcode's is clang)")
    args = ap.parse_args(argv)
    if shutil.which(args.cxx) is None:
        print(f"{args.cxx} not found")
        return 1
    results = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        exe = tmp / "unit_render"
        subprocess.run([args.cxx, *FLAGS, "-o", str(exe), str(export.CPP_DIR / "tools" / "unit_render.cpp")],
                       check=True)
        for kind in ("drive", "amp"):
            try:
                model, label = _model_path(kind, getattr(args, kind), tmp, args.drive_section,
                                           not args.no_output_fir, args.band_chain)
                probe = subprocess.run([str(exe), str(model), "--bench", "0", "48000"], capture_output=True,
                                       text=True, check=False)
                if probe.returncode != 0:
                    raise RuntimeError(probe.stderr.strip())
            except Exception as e:  # noqa: BLE001
                print(f"{kind:6s} not measured: {e}")
                results[kind] = {"error": str(e)}
                continue
            row = {"model": label, "target_instr_per_sample": TARGETS[kind]}
            if shutil.which("valgrind"):
                ir_full = _callgrind_ir(exe, model, args.seconds, tmp)
                ir_setup = _callgrind_ir(exe, model, 0.0, tmp)
                row["instr_per_sample"] = (ir_full - ir_setup) / (args.seconds * 48000)
                row["setup_instr"] = ir_setup
                doc = json.loads(model.read_text())
                knob = next((k["id"] for k in doc["knobs"] if k["modelled"] and k["kind"] == "continuous"), None)
                if knob:  # a knob automated over its whole range every second, smoothing on
                    sweep = ("--smooth", "--sweep", knob)
                    ir_sweep = _callgrind_ir(exe, model, args.seconds, tmp, sweep)
                    ir_sweep0 = _callgrind_ir(exe, model, 0.0, tmp, sweep)
                    row["instr_per_sample_automating"] = (ir_sweep - ir_sweep0) / (args.seconds * 48000)
                    row["automated_knob"] = knob
            row["ns_per_sample"] = _ns_per_sample(exe, model)
            row["realtime_factor_48k"] = 1e9 / 48000 / row["ns_per_sample"]
            results[kind] = row
            ips = row.get("instr_per_sample")
            auto = row.get("instr_per_sample_automating")
            print(f"{kind:6s} {ips if ips is None else f'{ips:8.0f}'} instr/sample (target <= {TARGETS[kind]}), "
                  f"{row['ns_per_sample']:7.1f} ns/sample, {row['realtime_factor_48k']:6.0f}x real time at 48 kHz "
                  f"[{row['model']}]")
            if auto is not None:
                print(f"{'':6s} {auto:8.0f} instr/sample while automating {row['automated_knob']!r} "
                      "(coefficients redesigned every 32 samples)")
    print(f"build: {args.cxx} {' '.join(FLAGS)}; callgrind Ir ({args.seconds:g} s - set-up) / samples")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
