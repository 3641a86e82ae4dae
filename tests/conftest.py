"""Shared test set-up.

torch on a 2-core machine: the default intra-op thread count made small loops up to
50x slower at random, so every test process uses one thread (imported lazily: tests
that do not touch torch never pay for the import).

``juce_build`` (session scope): the exported JUCE project, built once (see below).
``rendered_project`` (session scope): a tiny one-block project with every capture rendered
by the virtual rig (``copy_project`` it before use); ``render_tiny_project`` makes one.
``tmux``: a private tmux server for driving the real app (tests/tmux_helpers.py).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# The suite runs two pytest workers (-n auto) on two cores already: a fit here computes
# on one process unless its test asks for more (FitConfig.processes; dsp.parallel)
os.environ.setdefault("UNIT_FIT_PROCESSES", "1")


def pytest_configure(config):  # noqa: D103
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the group marks
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n auto``, the README's commands) the tests that need the
    JUCE build (about 5 minutes of compiling) run in one worker, so it is built once."""
    for item in items:
        if "juce_build" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("juce"))


# ------------------------------------------------------------------ the JUCE plugin build
# One build of the exported JUCE project per pytest session, shared by every test that
# needs the plugin (tests/test_capture_plugin.py hosts its VST3 with pedalboard; the
# export's build test checks the Standalone and the VST3 exist). The build folder is
# keyed by a hash of everything that goes into it (the exported sources, the JUCE and
# cmake versions, the targets): when pytest's cache is on (not under `.ci/run`, which
# passes -p no:cacheprovider) it lives in .pytest_cache/ and a later session whose hash
# matches reuses it; a changed template is rebuilt incrementally in the same folder
# (about 5 minutes from scratch on 2 cores, seconds when only the plugin sources change).
# UNIT_TEST_JUCE_BUILD_DIR=/some/dir puts it elsewhere (kept between sessions too).

JUCE_TARGETS = ("UnitRig_VST3", "UnitRig_Standalone")


def juce_available() -> bool:
    """cmake, a C++ compiler and an installed JUCE (Debian: juce-modules-source)."""
    return bool(shutil.which("cmake") and (shutil.which("c++") or shutil.which("g++")) and _juce_config_dirs())


def _juce_config_dirs() -> list[str]:
    return sorted(glob.glob("/usr/lib/*/cmake/JUCE-*") + glob.glob("/usr/lib/cmake/JUCE-*")
                  + glob.glob("/usr/local/lib/cmake/JUCE-*"))


def drive_knobs():
    from dsp.controls import KnobDef

    return [KnobDef("Drive", affects=("pre_gain_db", "clip_knee", "tone_lp_hz", "tone_lp_q")),
            KnobDef("Tone", affects=("tone_lp_hz", "tone_shelf_db", "tone_shelf_hz", "tone_mid_hz",
                                     "tone_mid_db", "tone_mid_q")),
            KnobDef("Mode", kind="switch", minimum=1, maximum=3, positions=(1.0, 2.0, 3.0),
                    reference=2.0, affects=("clip_asym", "dry_mix", "input_hp_hz")),
            KnobDef("Level", affects=None)]


def amp_knobs():
    from dsp.controls import KnobDef

    return [KnobDef("Gain", affects=("pre_gain_db", "stage2_gain_db", "tube1_bias")),
            KnobDef("Bass", affects=("tonestack_bass",)), KnobDef("Mid", affects=("tonestack_mid",)),
            KnobDef("Treble", affects=("tonestack_treble", "inter1_lp_hz")),
            KnobDef("Master", affects=("master_db", "sag_depth", "pa_bias", "pa_crossover")),
            KnobDef("Presence", affects=("presence_db", "depth_db")),
            KnobDef("Bright", kind="switch", minimum=0, maximum=1, positions=(0.0, 1.0), reference=0.0,
                    affects=("inter1_lp_hz", "post_gain_db"))]



def juce_fixture_models():
    """The blocks the fixture exports: a drive (Drive, Tone, a 3-way Mode switch, Level)
    into an amp (Gain, Bass, Mid, Treble, Master, Presence, a Bright switch), with the
    rig's fixed knob Out (the knob lists above, which tests/test_export.py uses too). Synthetic
    fitted blocks (seeded: the same bytes every time, so the hash is stable); the plugin
    computes their math like that of any fit."""
    from dsp import export

    drive, amp = drive_knobs(), amp_knobs()
    models = {"01_Drive": export.synthetic_block("drive", drive, seed=1, oversample=2, polarity=-1.0),
              "02_Amp": export.synthetic_block("amp", amp, seed=19, oversample=2, polarity=-1.0)}
    rig = {"format": 1, "project": "Bench", "sample_rate": 48000, "blocks": [
        {"id": "01_Drive", "topology": "drive", "knobs": [
            {"name": "Drive", "role": "sweep"}, {"name": "Out", "role": "fixed", "fixed": 6.0}]},
        {"id": "02_EQ", "topology": "eq_match", "knobs": [
            {"name": "Gate", "role": "fixed", "fixed": 0.0, "minimum": 0.0, "maximum": 1.0}]}]}
    return models, rig


@dataclasses.dataclass
class JuceBuild:
    """A built export. ``export_dir`` is the export folder (model.json, cpp/, juce/),
    ``models``/``doc`` the blocks and the model document it was exported from."""

    export_dir: Path
    build_dir: Path
    models: dict
    rig: dict
    doc: dict
    targets: tuple[str, ...]
    hash: str
    reused: bool  # True: an earlier session's build with the same hash, nothing compiled
    seconds: float  # configure + build time in this session

    @property
    def artefacts(self) -> Path:
        return self.build_dir / "UnitRig_artefacts" / "Release"

    @property
    def vst3(self) -> Path:
        """The VST3 bundle (a folder: UNIT Rig.vst3/Contents/<arch>-linux/UNIT Rig.so)."""
        return self.artefacts / "VST3" / "UNIT Rig.vst3"

    @property
    def vst3_binaries(self) -> list[Path]:
        return sorted(self.vst3.glob("Contents/*/UNIT Rig.so"))

    @property
    def standalone(self) -> Path:
        return self.artefacts / "Standalone" / "UNIT Rig"


def _tree_hash(root: Path, extra: list[str]) -> str:
    h = hashlib.sha256()
    for s in extra:
        h.update(s.encode() + b"\0")
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _sync_tree(src: Path, dst: Path) -> None:
    """Make ``dst`` hold exactly ``src``'s files, rewriting only files whose bytes
    changed (unchanged files keep their mtime: the next build is incremental)."""
    wanted = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    if dst.exists():
        for p in sorted(dst.rglob("*"), reverse=True):
            rel = p.relative_to(dst)
            if p.is_file() and rel not in wanted:
                p.unlink()
    for rel in sorted(wanted):
        s, d = src / rel, dst / rel
        data = s.read_bytes()
        if d.is_file() and d.read_bytes() == data:
            continue
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_bytes(data)


def ensure_juce_build(cache_dir: Path, scratch: Path, targets=JUCE_TARGETS, log=print) -> JuceBuild:
    """Export the fixture's blocks and build ``targets`` in ``cache_dir`` (reused when its
    stamp's hash matches). Raises RuntimeError with the build's last output on failure."""
    import fcntl
    import time

    from dsp import export

    models, rig = juce_fixture_models()
    fresh = scratch / "export"
    shutil.rmtree(fresh, ignore_errors=True)
    export.export_project_models(models, rig, fresh, golden=False)
    cmake_version = subprocess.run(["cmake", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    key = _tree_hash(fresh, [cmake_version, *_juce_config_dirs(), *targets, "Release"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    src, build, stamp = cache_dir / "src", cache_dir / "build", cache_dir / "stamp.json"
    doc = json.loads((fresh / "model.json").read_text())
    t0 = time.monotonic()
    with open(cache_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once: the second waits, then reuses
        try:
            done = json.loads(stamp.read_text()).get("hash") == key
        except (OSError, ValueError):
            done = False
        result = JuceBuild(src, build, models, rig, doc, tuple(targets), key, done, 0.0)
        if done and result.vst3_binaries and ("UnitRig_Standalone" not in targets or result.standalone.is_file()):
            return result
        stamp.unlink(missing_ok=True)
        _sync_tree(fresh, src)
        if not (build / "CMakeCache.txt").is_file():
            log(f"juce_build: configuring {src / 'juce'}")
            r = subprocess.run(["cmake", "-S", str(src / "juce"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("cmake configure failed:\n" + (r.stdout[-3000:] + r.stderr[-3000:]))
        for target in targets:
            log(f"juce_build: building {target} (about 5 min from scratch on 2 cores)")
            r = subprocess.run(["cmake", "--build", str(build), "--target", target, "-j2"],
                               capture_output=True, text=True, timeout=3600)
            if r.returncode != 0:
                raise RuntimeError(f"building {target} failed:\n" + (r.stdout[-3000:] + r.stderr[-3000:]))
        stamp.write_text(json.dumps({"hash": key, "targets": list(targets)}))
        result.seconds = time.monotonic() - t0
        return result


@pytest.fixture(scope="session")
def juce_build(request, tmp_path_factory) -> JuceBuild:
    """The exported JUCE project, built once per session (see above). Skips when cmake or
    JUCE is missing; fails with the compiler's output when the build fails."""
    if not juce_available():
        pytest.skip("needs cmake, g++ and JUCE (apt-get install juce-modules-source)")
    where = os.environ.get("UNIT_TEST_JUCE_BUILD_DIR")
    if where:
        cache_dir = Path(where)
    elif getattr(request.config, "cache", None) is not None:
        cache_dir = Path(request.config.cache.mkdir("unit-juce-build"))
    else:
        cache_dir = tmp_path_factory.mktemp("juce-build")
    try:
        return ensure_juce_build(cache_dir, tmp_path_factory.mktemp("juce-export"))
    except RuntimeError as exc:
        pytest.fail(f"the exported JUCE project does not build: {exc}", pytrace=False)


# ------------------------------------------------------------------ a tiny rendered project
# One drive block, Drive and Bright swept 0/5/10, Level fixed, 3 chaos captures (9 in
# all), rendered by the virtual rig: tests/test_jobs.py, test_training.py and the training
# screens' tests run the real training process on it.

TINY_SR = 48000
TINY_BLOCK = "01_Pedal"


def tiny_drive_rig(name: str) -> str:
    """The rig.toml of the tiny project: project ``name``, rig folder ``"<name> Rig"``."""
    return f"""
format = 1
project = "{name}"
rig_folder = "{name} Rig"
[[blocks]]
id = "{TINY_BLOCK}"
topology = "drive"
chaos_count = 3
chaos_seed = 3
  [[blocks.knobs]]
  name = "Drive"
  sweep = [0, 5, 10]
  [[blocks.knobs]]
  name = "Bright"
  sweep = [0, 5, 10]
  [[blocks.knobs]]
  name = "Level"
  role = "fixed"
  fixed = 5
"""


def strummed_input(seconds: float = 2.0, freqs=(110, 147, 196, 82.4), first_onset: float = 0.1,
                   sr: int = TINY_SR):
    """A seeded guitar-like input: one decaying square-ish note per frequency in ``freqs``,
    the first at ``first_onset`` s and then every 0.45 s, peak 0.5."""
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    x = np.zeros_like(t)
    for k, f in enumerate(freqs):
        i0 = int((first_onset + 0.45 * k) * sr)
        env = np.exp(-(t[: t.size - i0]) * 5)
        x[i0:] += 0.3 * env * np.sign(np.sin(2 * np.pi * f * t[: t.size - i0])) * (0.6 + 0.4 * rng.random())
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def render_tiny_project(tmp: Path, name: str, **input_kw):
    """Create ``tmp/proj`` (the tiny rig, project ``name``) from ``tmp/in.wav``
    (``strummed_input(**input_kw)``) and render every capture with the virtual rig."""
    import soundfile as sf

    from unit_tui.capture import missing_captures, run_captures
    from unit_tui.demo import virtual_renderer
    from unit_tui.project import Project

    sf.write(tmp / "in.wav", strummed_input(**input_kw), TINY_SR, subtype="PCM_24")
    project = Project.create(tmp / "proj", tiny_drive_rig(name), input_wav=tmp / "in.wav")
    outcomes = run_captures(project, missing_captures(project), virtual_renderer)
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    return project


def copy_project(src: Path, dest: Path):
    """A copy of the project at ``src`` (e.g. ``rendered_project``), opened."""
    from unit_tui.project import Project

    shutil.copytree(src, dest)
    return Project.open(dest)


@pytest.fixture(scope="session")
def rendered_project(tmp_path_factory) -> Path:
    """A tiny project ("Jobs") with every capture rendered by the virtual rig (copy it before use)."""
    project = render_tiny_project(tmp_path_factory.mktemp("jobs-template"), "Jobs")
    project.scan()  # warm the check cache
    return project.root


# ------------------------------------------------------------------ the real app under tmux


@pytest.fixture
def tmux(tmp_path):
    """A private tmux server (tests/tmux_helpers.py) with the app's test environment;
    killed when the test ends."""
    from tmux_helpers import Tmux

    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        server.kill()
