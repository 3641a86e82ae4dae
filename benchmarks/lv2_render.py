"""Render a test signal through a Guitarix LV2 plugin at a knob setting (fidelity benchmark).

Used by ``unit-trainer capture`` as the capture command::

    unit-trainer capture WORK/ds1 --command \
        'python benchmarks/lv2_render.py ds1 {input} {output} {setting_json}'

and imported by ``benchmarks/fidelity.py`` to render the held-out settings.

The plugin of each benchmark block is described beside its rig file:
``benchmarks/rigs/<key>.toml`` is the rig (format 1, what ``unit-trainer new --rig``
reads) and ``benchmarks/rigs/<key>.lv2.toml`` maps its knobs to the plugin's control
ports (the rig format has no field for that)::

    uri = "http://guitarix.sourceforge.net/plugins/gx_bossds1_#_bossds1_"
    trim_db = 5.0           # fixed output trim (dB), the same for every setting
    latency_range = [27, 32]  # what the blips measured (informative; never cropped)
    [fixed_ports]           # ports no knob moves
    BYPASS = 1.0            # 1 = effect on
    [[knobs]]
    name = "Drive"          # the rig knob
    symbol = "DRIVE"        # the LV2 port symbol (``lv2info URI``)
    port_min = 0.0          # the port value at the knob's minimum (0) ...
    port_max = 1.0          # ... and at its maximum (10); linear in between

Two traps of ``lv2file`` are handled here: it clamps its output to +-1 when it detects
clipping, so the plugin is given a 32-bit float copy of the input and run with
``--ignore-clipping`` (the float output keeps values above full scale); then the
plugin's fixed ``trim_db`` brings the loudest settings under full scale. Plugins that
delay their output are not cropped: the trainer measures latency from the blips.
The output is a mono 32-bit float WAV at the input's sample rate, as long as the input.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

BENCH_DIR = Path(__file__).resolve().parent
RIGS_DIR = BENCH_DIR / "rigs"
REPO_ROOT = BENCH_DIR.parent
LV2FILE = os.environ.get("LV2FILE", "lv2file")
CLIP_LEVEL = 0.999  # the project's capture checks reject runs at |x| >= 0.999

__all__ = ["PortMap", "PluginSpec", "PLUGIN_KEYS", "load_spec", "rig_path", "spec_path",
           "port_value", "port_values", "render", "render_file", "main"]

PLUGIN_KEYS = ("ds1", "studiopre", "metalhead")


@dataclass(frozen=True)
class PortMap:
    """One rig knob mapped linearly onto one LV2 control port."""

    knob: str
    symbol: str
    port_min: float
    port_max: float
    knob_min: float = 0.0
    knob_max: float = 10.0


@dataclass(frozen=True)
class PluginSpec:
    key: str
    uri: str
    knobs: tuple[PortMap, ...]
    fixed_ports: dict[str, float] = field(default_factory=dict)
    trim_db: float = 0.0
    latency_range: tuple[float, float] | None = None
    name: str = ""

    def knob(self, name: str) -> PortMap:
        for k in self.knobs:
            if k.knob == name:
                return k
        raise KeyError(f"{self.key}: no knob {name!r}; mapped knobs: {[k.knob for k in self.knobs]}")

    @property
    def symbols(self) -> list[str]:
        return [k.symbol for k in self.knobs] + list(self.fixed_ports)


def rig_path(key: str) -> Path:
    return RIGS_DIR / f"{key}.toml"


def spec_path(key: str) -> Path:
    return RIGS_DIR / f"{key}.lv2.toml"


def load_spec(key: str) -> PluginSpec:
    """The plugin mapping of benchmark block ``key``; knob ranges come from its rig file."""
    path = spec_path(key)
    if not path.is_file():
        known = ", ".join(sorted(p.name.removesuffix(".lv2.toml") for p in RIGS_DIR.glob("*.lv2.toml")))
        raise SystemExit(f"lv2_render: unknown plugin key {key!r} (no {path}); known: {known}")
    data = tomllib.loads(path.read_text("utf-8"))
    ranges = {}
    rp = rig_path(key)
    if rp.is_file():
        rig = tomllib.loads(rp.read_text("utf-8"))
        for block in rig.get("blocks", []):
            for k in block.get("knobs", []):
                if "positions" in k:
                    lo, hi = float(min(k["positions"])), float(max(k["positions"]))
                else:
                    lo, hi = float(k.get("minimum", 0.0)), float(k.get("maximum", 10.0))
                ranges[k["name"]] = (lo, hi)
    knobs = []
    for k in data["knobs"]:
        lo, hi = ranges.get(k["name"], (0.0, 10.0))
        knobs.append(PortMap(k["name"], k["symbol"], float(k["port_min"]), float(k["port_max"]), lo, hi))
    lat = data.get("latency_range")
    return PluginSpec(key=key, uri=data["uri"], knobs=tuple(knobs),
                      fixed_ports={s: float(v) for s, v in data.get("fixed_ports", {}).items()},
                      trim_db=float(data.get("trim_db", 0.0)),
                      latency_range=None if lat is None else (float(lat[0]), float(lat[1])), name=data.get("name", key))


def port_value(pm: PortMap, value: float) -> float:
    """The port value at knob ``value``: knob_min -> port_min, knob_max -> port_max, linear."""
    frac = (float(value) - pm.knob_min) / (pm.knob_max - pm.knob_min)
    frac = min(1.0, max(0.0, frac))
    return pm.port_min + frac * (pm.port_max - pm.port_min)


def port_values(spec: PluginSpec, setting: dict[str, float]) -> dict[str, float]:
    """Every control port's value for a rig setting (knobs without a port are ignored)."""
    out = dict(spec.fixed_ports)
    for pm in spec.knobs:
        if pm.knob not in setting:
            raise KeyError(f"{spec.key}: the setting has no value for knob {pm.knob!r}: {setting}")
        out[pm.symbol] = port_value(pm, setting[pm.knob])
    return out


def _run_lv2file(spec: PluginSpec, in_path: Path, out_path: Path, ports: dict[str, float]) -> None:
    cmd = [LV2FILE, "-i", str(in_path), "-o", str(out_path), "--ignore-clipping"]
    for sym, v in ports.items():
        cmd += ["-p", f"{sym}:{v:.9g}"]
    cmd.append(spec.uri)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"lv2file exited with {proc.returncode}: {' / '.join(tail) or '(no output)'}")


def render(spec: PluginSpec, audio: np.ndarray, sample_rate: int, setting: dict[str, float],
           trim: bool = True) -> np.ndarray:
    """``audio`` (mono) through the plugin at ``setting``: float32, same length, trimmed."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    ports = port_values(spec, setting)
    with tempfile.TemporaryDirectory(prefix="lv2r") as tmp:
        src, dst = Path(tmp, "in.wav"), Path(tmp, "out.wav")
        sf.write(str(src), x, int(sample_rate), subtype="FLOAT")  # float: nothing clamped on the way in
        _run_lv2file(spec, src, dst, ports)
        y, sr_out = sf.read(str(dst), dtype="float32", always_2d=True)
    if sr_out != int(sample_rate):
        raise RuntimeError(f"lv2file wrote {sr_out} Hz for a {sample_rate} Hz input")
    y = y[:, 0] if y.shape[1] == 1 else y.mean(axis=1)
    if y.size < x.size:  # never expected; keep the length the checks want
        y = np.concatenate([y, np.zeros(x.size - y.size, np.float32)])
    y = y[: x.size]
    if trim:
        y = y * np.float32(10 ** (spec.trim_db / 20))
    return y.astype(np.float32)


def render_file(key: str, input_wav: str | os.PathLike, output_wav: str | os.PathLike,
                setting: dict[str, float]) -> float:
    """Render ``input_wav`` to ``output_wav`` (mono float WAV); returns the output's peak."""
    spec = load_spec(key)
    x, sr = sf.read(os.fspath(input_wav), dtype="float32", always_2d=True)
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    y = render(spec, x, sr, setting)
    sf.write(os.fspath(output_wav), y, sr, subtype="FLOAT", format="WAV")
    return float(np.max(np.abs(y))) if y.size else 0.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        print("usage: python benchmarks/lv2_render.py PLUGIN_KEY INPUT.wav OUTPUT.wav SETTING_JSON\n"
              f"  PLUGIN_KEY: one of {', '.join(PLUGIN_KEYS)}", file=sys.stderr)
        return 2
    key, inp, out, setting_json = argv
    try:
        setting = json.loads(setting_json)
    except json.JSONDecodeError as exc:
        print(f"lv2_render: SETTING_JSON is not JSON ({exc})", file=sys.stderr)
        return 2
    try:
        peak = render_file(key, inp, out, {k: float(v) for k, v in setting.items()})
    except (RuntimeError, KeyError, OSError) as exc:
        print(f"lv2_render: {exc}", file=sys.stderr)
        return 1
    if peak >= CLIP_LEVEL:
        print(f"lv2_render: warning: {key} peaks at {20 * math.log10(peak):+.2f} dBFS at {setting}; "
              "lower trim_db in benchmarks/rigs/" f"{key}.lv2.toml", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
