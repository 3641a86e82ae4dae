"""The checklist TUI, driven with Textual's Pilot on a tiny real project.

Each test builds a project in ``tmp_path`` with :meth:`Project.create` (one block, two
knobs, a 2 s input made with numpy) and drives the app the user runs
(``create_app``). Files are written while the app runs, as Logic would bounce them;
no test presses a refresh key.
"""
from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from unit_tui.app import create_app
from unit_tui.clipboard import copy_with_pyperclip, over_ssh, use_system_clipboard
from unit_tui.project import Project
from unit_tui.screens.checklist import ChecklistScreen, open_folder_command
from unit_tui.screens.picker import PickerScreen, load_recent, recent_path, remember_project
from unit_tui.screens.setting import SettingScreen
from unit_tui.screens.setup import BlockKnobs, SetupScreen
from unit_tui.widgets.progress import progress_text

SR = 48000
SIZE = (120, 40)
LIVE_TIMEOUT_S = 5.0  # generous for a loaded CI machine; the product target is 1.5 s

TINY_RIG = """\
format = 1
project = "Tiny - Trainer"
rig_folder = "Tiny Rig"
sample_rate = 48000
test_signal = "input.wav"

[[blocks]]
id = "01_Fuzz"
name = "Fuzz"
topology = "drive"
chaos_count = 2
chaos_seed = 7

  [[blocks.knobs]]
  name = "Gain"
  role = "sweep"
  sweep = [0.0, 5.0, 10.0]

  [[blocks.knobs]]
  name = "Tone"
  role = "sweep"
  sweep = [0.0, 10.0]
"""

TWO_BLOCK_RIG = TINY_RIG.replace('project = "Tiny - Trainer"', 'project = "Tiny Two - Trainer"') + """
[[blocks]]
id = "02_Amp"
name = "Amp"
topology = "amp"
chaos_count = 0

  [[blocks.knobs]]
  name = "Volume"
  role = "sweep"
  sweep = [0.0, 10.0]
"""

FIRST = "01_Fuzz_Gain_0p0.wav"
SECOND = "01_Fuzz_Gain_5p0.wav"


# ---------------------------------------------------------------------------- helpers


def make_input(seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    """A guitar-like test signal: decaying harmonic notes plus a little noise."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for start, f0 in ((0.05, 110.0), (0.55, 146.8), (1.05, 196.0), (1.5, 82.4)):
        env = np.where(t >= start, np.exp(-(t - start) * 3.0), 0.0)
        for h in range(1, 6):
            x += env * np.sin(2 * np.pi * f0 * h * (t - start)) / h
    x += 0.01 * rng.standard_normal(len(t))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(autouse=True)
def quiet_env(tmp_path, monkeypatch):
    """No test touches the user's config, the system clipboard or a file manager."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("UNIT_TRAINER_NO_SYSTEM_CLIPBOARD", "1")
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 5000 10.0.0.2 22")
    monkeypatch.delenv("TMUX", raising=False)


@pytest.fixture
def input_wav(tmp_path) -> Path:
    path = tmp_path / "input_src.wav"
    sf.write(str(path), make_input(), SR, subtype="PCM_24")
    return path


def create_project(tmp_path: Path, input_wav: Path, rig: str = TINY_RIG, name: str = "proj") -> Project:
    return Project.create(tmp_path / name, rig, source="test rig", input_wav=input_wav)


@pytest.fixture
def project(tmp_path, input_wav) -> Project:
    return create_project(tmp_path, input_wav)


def capture_path(project: Project, filename: str) -> Path:
    for cap in project.plan().captures:
        if cap.filename == filename:
            return project.path(cap.relpath)
    raise KeyError(filename)


def bounce(project: Project, filename: str, *, sr: int = SR) -> Path:
    """Write a good capture, as Logic would: the input through a soft clipper."""
    x = sf.read(str(project.input_path), dtype="float32")[0]
    gain = 3.0 + 0.5 * sorted(c.filename for c in project.plan().captures).index(filename)
    y = np.tanh(gain * x) * 0.7
    path = capture_path(project, filename)
    sf.write(str(path), y, sr, subtype="PCM_24")
    return path


async def wait_for(pilot, condition, timeout: float = LIVE_TIMEOUT_S, step: float = 0.05) -> float:
    """Let the app run until ``condition()`` holds; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        await pilot.pause(step)
    assert condition(), f"condition not met within {timeout} s"
    return time.monotonic() - start


async def open_checklist(pilot) -> ChecklistScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChecklistScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.scans_done >= 1)
    return screen


def row_status(screen: ChecklistScreen, filename: str) -> str:
    return next(screen.row_status(c.relpath) for c in screen.captures() if c.filename == filename)


def screen_text(app) -> str:
    """The characters on screen, line by line (what export_screenshot draws, as text)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


def widget_text(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


# ---------------------------------------------------------------------------- checklist


async def test_first_frame_shows_plan_and_progress_header(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        assert screen.table.row_count == 7  # Gain x3, Tone x2, chaos x2
        header = widget_text(app, "#progress")
        assert "0/7 ready" in header and "min of bouncing left" in header
        text = screen_text(app)
        assert FIRST in text and "Tiny - Trainer" in text


async def test_c_copies_next_missing_name_and_shows_it(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        await open_checklist(pilot)
        await pilot.press("c")
        assert app.clipboard == FIRST
        line = widget_text(app, "#status-line")
        assert "Copied" in line and FIRST in line and "01_Fuzz/01_Single_Sweeps" in line
        assert FIRST in screen_text(app)


async def test_c_skips_ready_captures(project):
    bounce(project, FIRST)
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        await wait_for(pilot, lambda: row_status(screen, FIRST) == "ready")
        screen.table.move_cursor(row=0)
        await pilot.press("c")
        assert app.clipboard == SECOND
        assert screen.table.cursor_key.endswith(SECOND)


async def test_bounced_file_turns_ready_without_a_key(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        assert row_status(screen, FIRST) == "missing"
        bounce(project, FIRST)
        took = await wait_for(pilot, lambda: row_status(screen, FIRST) == "ready")
        assert took < LIVE_TIMEOUT_S
        await wait_for(pilot, lambda: "1/7 ready" in widget_text(app, "#progress"))


async def test_file_being_written_shows_writing_never_invalid(project):
    """A bounce that takes a while: the row says writing (or missing) until it is done."""
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        x = sf.read(str(project.input_path), dtype="float32")[0]
        y = np.tanh(3.0 * x) * 0.7
        path = capture_path(project, FIRST)
        seen = set()
        with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_24") as f:
            for chunk in np.array_split(y, 8):
                f.write(chunk)
                f.flush()
                for _ in range(3):
                    await pilot.pause(0.05)
                    seen.add(row_status(screen, FIRST))
        await wait_for(pilot, lambda: row_status(screen, FIRST) == "ready")
        assert "invalid" not in seen, seen
        assert "writing" in seen, seen


async def test_bad_files_show_their_reason(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        not_audio = capture_path(project, FIRST)
        not_audio.write_text("this is not a wav file\n" * 100)
        wrong_rate = capture_path(project, SECOND)
        x = sf.read(str(project.input_path), dtype="float32")[0]
        sf.write(str(wrong_rate), np.tanh(3 * x[::2]), 24000, subtype="PCM_24")
        await wait_for(pilot, lambda: row_status(screen, FIRST) == "invalid"
                       and row_status(screen, SECOND) == "invalid")

        rate_reason = screen.states[capture_path(project, SECOND).relative_to(project.root).as_posix()].reason
        assert "24000" in rate_reason or "24 kHz" in rate_reason or "sample rate" in rate_reason.lower()
        assert screen.table.move_to(capture_path(project, SECOND).relative_to(project.root).as_posix())
        await pilot.pause()
        detail = widget_text(app, "#detail")
        assert "invalid" in detail and rate_reason.split(";")[0][:30] in detail

        screen.table.move_to(not_audio.relative_to(project.root).as_posix())
        await pilot.pause()
        assert screen.states[not_audio.relative_to(project.root).as_posix()].reason
        assert "invalid" in widget_text(app, "#detail")


async def test_extra_file_is_listed_with_a_suggestion(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        folder = capture_path(project, FIRST).parent
        x = sf.read(str(project.input_path), dtype="float32")[0]
        sf.write(str(folder / "01_Fuzz_Gain_2p5.wav"), np.tanh(3 * x), SR, subtype="PCM_24")
        await wait_for(pilot, lambda: any(k.endswith("01_Fuzz_Gain_2p5.wav") for k in screen.table.keys))
        key = next(k for k in screen.table.keys if k.endswith("01_Fuzz_Gain_2p5.wav"))
        assert screen.table.row(key).status == "extra"
        assert screen.states[key].reason  # the closest expected name, or what to do
        screen.table.move_to(key)
        await pilot.pause()
        assert "extra" in widget_text(app, "#detail")


async def test_n_moves_to_the_next_missing_capture(project):
    bounce(project, SECOND)
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        await wait_for(pilot, lambda: row_status(screen, SECOND) == "ready")
        assert screen.table.cursor_row == 0
        await pilot.press("n")  # row 1 is ready: skip to row 2
        assert screen.table.cursor_key.endswith("01_Fuzz_Gain_10p0.wav")
        await pilot.press("n")
        assert screen.table.cursor_key.endswith("01_Fuzz_Tone_0p0.wav")
        assert "Next to bounce" in widget_text(app, "#status-line")


async def test_status_filter_changes_rows(project):
    bounce(project, FIRST)
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        await wait_for(pilot, lambda: row_status(screen, FIRST) == "ready")
        assert screen.table.row_count == 7
        await pilot.press("s")
        assert screen.status_filter == "missing" and screen.table.row_count == 6
        await pilot.press("s")
        assert screen.status_filter == "ready" and screen.table.row_count == 1
        await pilot.press("s")
        assert screen.status_filter == "invalid" and screen.table.row_count == 0
        for _ in range(3):  # writing, extra, back to all
            await pilot.press("s")
        assert screen.status_filter == "all" and screen.table.row_count == 7
        assert "status all" in widget_text(app, "#filters")


async def test_block_filter_cycles_blocks(tmp_path, input_wav):
    project = create_project(tmp_path, input_wav, rig=TWO_BLOCK_RIG, name="two")
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        assert screen.table.row_count == 9
        await pilot.press("b")
        assert screen.block_filter == "01_Fuzz" and screen.table.row_count == 7
        assert "Fuzz" in widget_text(app, "#filters")
        await pilot.press("b")
        assert screen.block_filter == "02_Amp" and screen.table.row_count == 2
        await pilot.press("b")
        assert screen.block_filter is None and screen.table.row_count == 9


async def test_cursor_stays_on_its_row_when_rows_update(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        screen.table.move_cursor(row=3)
        key = screen.table.cursor_key
        bounce(project, FIRST)
        await wait_for(pilot, lambda: row_status(screen, FIRST) == "ready")
        assert screen.table.cursor_key == key


async def test_detail_pane_and_modal_show_the_full_setting(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        detail = widget_text(app, "#detail")
        assert "Gain 0.0" in detail and "Tone 5.0" in detail
        await pilot.press("d")
        assert isinstance(app.screen, SettingScreen)
        table = str(app.screen.query_one("#setting-table").render())
        assert "Gain" in table and "Tone" in table and "set this" in table
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("enter")
        assert isinstance(app.screen, SettingScreen)
        await pilot.press("escape")


async def test_open_folder_over_ssh_shows_the_path(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        await open_checklist(pilot)
        await pilot.press("o")
        line = widget_text(app, "#status-line")
        assert "01_Single_Sweeps" in line and "over SSH" in line


async def test_t_toggles_dark_and_light_themes(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        assert app.theme == "unit-dark"
        dark = screen.table.get_component_rich_style("capture-table--missing").color
        await pilot.press("t")
        assert app.theme == "unit-light"
        await pilot.pause()
        assert screen.table.get_component_rich_style("capture-table--missing").color != dark
        await pilot.press("t")
        assert app.theme == "unit-dark"
        app.theme = "textual-light"  # a built-in theme from the palette: our variables fall back
        await pilot.pause()
        assert screen.table.row_count == 7
        await pilot.press("t")
        assert app.theme == "unit-dark"


async def test_readable_at_80x24(project):
    app = create_app(project.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_checklist(pilot)
        await pilot.press("c")
        text = screen_text(app)
        assert "0/7 ready" in text
        assert f"Copied: {FIRST}" in text
        assert "c Copy name" in text.replace("  ", " ")


async def test_unknown_theme_falls_back(project):
    app = create_app(project.root, theme="no-such-theme")
    async with app.run_test(size=SIZE) as pilot:
        await open_checklist(pilot)
        assert app.theme == "unit-dark"


# ---------------------------------------------------------------------------- picker and setup


async def load_rig(pilot, setup, path: Path) -> None:
    """Type a rig path into the setup screen and press Enter, as the user does."""
    field = setup.query_one("#rig")
    field.focus()
    field.value = str(path)
    await pilot.press("enter")
    await pilot.pause()


async def test_no_project_shows_picker_and_setup_creates_a_project(tmp_path, input_wav):
    rig_file = tmp_path / "tiny.toml"
    rig_file.write_text(TINY_RIG)
    parent = tmp_path / "projects"
    parent.mkdir()
    app = create_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        setup = app.screen
        await load_rig(pilot, setup, rig_file)
        await wait_for(pilot, lambda: setup.rig is not None and setup.rig.project == "Tiny - Trainer")
        await pilot.pause()
        setup.query_one("#parent").value = str(parent)
        setup.query_one("#input-wav").value = str(input_wav)
        knobs = setup.query_one(BlockKnobs)
        knobs.focus()
        knobs.highlighted = 0  # Gain
        await pilot.press("space")  # Gain: sweep -> fixed
        assert "Gain" not in knobs.selected
        assert "fixed at" in str(knobs.get_option_at_index(0).prompt)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChecklistScreen), timeout=30)
        screen = await open_checklist(pilot)
        root = parent / "Tiny - Trainer"
        assert screen.project.root == root
        project = Project.open(root)
        assert project.rig.blocks[0].knob("Gain").role == "fixed"
        names = [c.filename for c in project.plan().captures]
        assert names == ["01_Fuzz_Tone_0p0.wav", "01_Fuzz_Tone_10p0.wav", "Chaos_Full_01.wav", "Chaos_Full_02.wav"]
        assert screen.table.row_count == 4
        assert root.resolve() in load_recent()


async def test_setup_errors_are_shown_not_raised(tmp_path, input_wav):
    rig_file = tmp_path / "tiny.toml"
    rig_file.write_text(TINY_RIG)
    existing = tmp_path / "Tiny - Trainer"
    existing.mkdir()
    (existing / "something.txt").write_text("the user's file")
    app = create_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        setup = app.screen
        # A rig file that does not exist.
        await load_rig(pilot, setup, tmp_path / "nope.toml")
        assert "no such rig file" in widget_text(app, "#setup-error")
        # A project folder that is not empty: refused, the user's file untouched.
        await load_rig(pilot, setup, rig_file)
        assert setup.rig.project == "Tiny - Trainer"
        setup.query_one("#parent").value = str(tmp_path)
        setup.query_one("#input-wav").value = str(input_wav)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "not empty" in widget_text(app, "#setup-error"), timeout=30)
        assert isinstance(app.screen, SetupScreen)
        assert (existing / "something.txt").read_text() == "the user's file"
        # No knob modelled: a rig error, shown.
        for knobs in setup.query(BlockKnobs):
            knobs.deselect_all()
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "no knob is modelled" in widget_text(app, "#setup-error")


async def test_picker_opens_a_recent_project(project):
    remember_project(project.root)
    app = create_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        assert project.root.name in screen_text(app)
        await pilot.press("enter")  # the most recent project is highlighted
        screen = await open_checklist(pilot)
        assert screen.project.root == project.root.resolve()


async def test_broken_project_dir_shows_picker_with_the_reason(tmp_path):
    app = create_app(tmp_path / "not-a-project")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        assert "no such folder" in widget_text(app, "#picker-error")


async def test_p_from_the_checklist_switches_project(tmp_path, input_wav):
    first = create_project(tmp_path, input_wav, name="one")
    second = create_project(tmp_path, input_wav, rig=TWO_BLOCK_RIG, name="two")
    app = create_app(first.root)
    async with app.run_test(size=SIZE) as pilot:
        await open_checklist(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        app.screen.query_one("#open-path").focus()
        app.screen.query_one("#open-path").value = str(second.root)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChecklistScreen)
                       and app.screen.project.root == second.root)
        screen = await open_checklist(pilot)
        assert screen.table.row_count == 9
        assert len(app.screen_stack) == 2  # the old checklist was replaced, not stacked


# ---------------------------------------------------------------------------- pieces


def test_progress_header_words():
    assert progress_text(37, 106, 69, 1.0) == "37/106 ready — about 69 min of bouncing left"
    assert progress_text(106, 106, 0, 1.0) == "106/106 ready — every capture is bounced"
    assert "about 2 h 05 min" in progress_text(0, 100, 100, 1.25)


def test_clipboard_routes(monkeypatch):
    env = {"SSH_CONNECTION": "1 2 3 4"}
    assert over_ssh(env) and not use_system_clipboard(env)
    assert not over_ssh({}) and use_system_clipboard({})
    assert not use_system_clipboard({"UNIT_TRAINER_NO_SYSTEM_CLIPBOARD": "1"})

    import pyperclip

    def no_backend(_text):
        raise pyperclip.PyperclipException("Pyperclip could not find a copy/paste mechanism")

    monkeypatch.setattr(pyperclip, "copy", no_backend)
    ok, detail = copy_with_pyperclip("x.wav")
    assert not ok and "no system clipboard" in detail


def test_open_folder_command(tmp_path):
    assert open_folder_command(tmp_path, {"SSH_TTY": "/dev/pts/1"}, "darwin") is None
    assert open_folder_command(tmp_path, {}, "darwin") == ["open", str(tmp_path)]
    assert open_folder_command(tmp_path, {}, "linux") is None  # no display


def test_recent_projects_store(tmp_path):
    assert recent_path() == tmp_path / "config" / "unit-trainer" / "recent.json"
    assert load_recent() == []
    recent_path().parent.mkdir(parents=True)
    recent_path().write_text("{not json")
    assert load_recent() == []  # damaged: ignored
    remember_project(tmp_path / "a")
    remember_project(tmp_path / "b")
    remember_project(tmp_path / "a")
    assert load_recent() == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]
    assert not list(recent_path().parent.glob(".recent.*"))  # no temp file left


def test_watcher_ignores_its_own_reads(tmp_path):
    from watchdog.events import FileClosedNoWriteEvent, FileModifiedEvent, FileOpenedEvent

    from unit_tui.watch import is_relevant

    f = str(tmp_path / "Rig" / "x.wav")
    assert is_relevant(tmp_path, FileModifiedEvent(f))
    assert not is_relevant(tmp_path, FileOpenedEvent(f))
    assert not is_relevant(tmp_path, FileClosedNoWriteEvent(f))
    assert not is_relevant(tmp_path, FileModifiedEvent(str(tmp_path / ".unit" / "state.json")))


def test_importing_the_app_does_not_import_torch():
    code = "import sys, unit_tui.app; sys.exit(1 if 'torch' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr or "unit_tui.app imported torch"


# ---------------------------------------------------------------------------- robustness


async def test_idle_checklist_does_not_rescan_in_a_loop(project):
    """Reading captures must not trigger the watcher (opened / closed-no-write events)."""
    bounce(project, FIRST)
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        await wait_for(pilot, lambda: row_status(screen, FIRST) == "ready")
        before = screen.scans_done
        await pilot.pause(2.0)
        assert screen.scans_done - before <= 2  # the 3 s fallback poll at most


async def test_broken_chaos_map_is_shown_with_its_line(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        cmap = next(project.root.rglob("chaos_map.csv"))
        cmap.write_text(cmap.read_text() + "../../escape.wav,1,2\n")
        await wait_for(pilot, lambda: screen.scan_error is not None)
        assert "line" in screen.scan_error and "chaos_map.csv" in screen.scan_error
        assert "line" in widget_text(app, "#progress")


async def test_rig_edit_reloads_the_plan(project):
    app = create_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_checklist(pilot)
        bounce(project, "01_Fuzz_Tone_10p0.wav")
        await wait_for(pilot, lambda: row_status(screen, "01_Fuzz_Tone_10p0.wav") == "ready")
        rig = project.rig_path.read_text().replace("sweep = [0.0, 10.0]", "sweep = [0.0, 5.0]")
        project.rig_path.write_text(rig)
        await wait_for(pilot, lambda: any(k.endswith("01_Fuzz_Tone_5p0.wav") for k in screen.table.keys))
        await wait_for(pilot, lambda: screen.status is not None
                       and any(k.endswith("01_Fuzz_Tone_10p0.wav") for k in screen.table.keys))
        key = next(k for k in screen.table.keys if k.endswith("01_Fuzz_Tone_10p0.wav"))
        assert screen.table.row(key).status == "extra"
        assert capture_path(Project.open(project.root), "01_Fuzz_Tone_5p0.wav").parent.joinpath(
            "01_Fuzz_Tone_10p0.wav").is_file()  # the user's file is untouched


async def test_typing_in_a_field_never_triggers_app_keys(tmp_path):
    app = create_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        name = app.screen.query_one("#name")
        name.focus()
        name.value = ""
        await pilot.press("q", "t", "c", "n")
        assert name.value == "qtcn"
        assert app.is_running and app.theme == "unit-dark"


def test_first_frame_imports_stay_light(project):
    """The app, the CLI and opening a project's plan need neither numpy nor soundfile:
    they load in the scan thread after the first frame (budget: first frame <= 0.5 s,
    measured by benchmarks/tui_startup.py)."""
    code = ("import sys, unit_tui.cli, unit_tui.app\n"
            "from unit_tui.project import Project\n"
            f"p = Project.open({str(project.root)!r}); p.plan()\n"
            "heavy = [m for m in ('torch', 'numpy', 'soundfile', 'scipy') if m in sys.modules]\n"
            "sys.exit(('imported: ' + ', '.join(heavy)) if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
