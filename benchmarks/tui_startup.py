"""How fast the checklist appears, and how fast checks run. Prints its figures.

    python benchmarks/tui_startup.py [--runs 5] [--project DIR]

* first frame: time from launching ``unit-trainer tui DIR`` in a fresh tmux pane
  (120x40) until the progress header ("N/M ready") is on screen, then until the first
  capture row is; median of ``--runs``.
* a bare Textual app measured the same way, for scale (Python + Textual start-up).
* checks: seconds per capture for ``check_capture`` (no cache), and ``status`` on the
  same project with a warm check cache.

Without ``--project`` it makes a demo project (``unit-trainer demo``) in a temp folder.
Needs tmux.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tmux(sock: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, check=check)


def time_to_text(command: str, texts: list[str], timeout: float = 20.0) -> list[float]:
    sock = f"unit-bench-{time.monotonic_ns()}"
    t0 = time.monotonic()
    _tmux(sock, "new-session", "-d", "-x", "120", "-y", "40", command)
    found: list[float] = []
    try:
        while len(found) < len(texts) and time.monotonic() - t0 < timeout:
            screen = _tmux(sock, "capture-pane", "-p", check=False).stdout
            while len(found) < len(texts) and texts[len(found)] in screen:
                found.append(time.monotonic() - t0)
            time.sleep(0.005)
    finally:
        _tmux(sock, "kill-server", check=False)
    if len(found) < len(texts):
        raise SystemExit(f"{texts[len(found)]!r} did not appear within {timeout} s")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--project", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from unit_tui.project import Project

    tmp = None
    if args.project is None:
        tmp = tempfile.TemporaryDirectory()
        args.project = Path(tmp.name) / "demo"
        subprocess.run([sys.executable, "-m", "unit_tui.cli", "demo", str(args.project), "--no-tui"],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    project = Project.open(args.project)
    plan = project.plan()
    first_name = plan.captures[0].filename

    py = shlex.quote(sys.executable)
    app_cmd = f"cd {shlex.quote(str(REPO))} && {py} -m unit_tui.cli tui {shlex.quote(str(args.project))}"
    hello = ("from textual.app import App\nfrom textual.widgets import Static\n"
             "class A(App):\n    def compose(self):\n        yield Static('hello ready')\nA().run()\n")
    hello_path = Path(tempfile.mkdtemp()) / "hello.py"
    hello_path.write_text(hello)
    hello_cmd = f"{py} {shlex.quote(str(hello_path))}"

    header, rows, bare = [], [], []
    for _ in range(args.runs):
        h, r = time_to_text(app_cmd, [" ready", first_name])
        header.append(h)
        rows.append(r)
        bare.append(time_to_text(hello_cmd, ["hello ready"])[0])

    # Checks: uncached per-capture cost, then a warm `status`.
    from unit_tui.checks import Status, check_capture

    ready = [s.relpath for s in project.scan().states if s.status == Status.READY][:10]
    ctx = project.context()
    t0 = time.perf_counter()
    for rel in ready:
        check_capture(project.path(rel), ctx)
    per_check = (time.perf_counter() - t0) / max(1, len(ready))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unit_tui.cli", "status", str(args.project)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    warm_status = time.perf_counter() - t0

    print(f"project: {args.project} ({len(plan.captures)} captures, test signal {project.minutes_per_capture() * 60 - 15:.0f} s)")
    print(f"first frame (header) : median {statistics.median(header):.2f} s  (runs: {', '.join(f'{v:.2f}' for v in header)})")
    print(f"first capture row    : median {statistics.median(rows):.2f} s")
    print(f"bare Textual app     : median {statistics.median(bare):.2f} s  (Python + Textual start-up, for scale)")
    print(f"check_capture        : {per_check * 1000:.0f} ms per capture (uncached)")
    print(f"status, warm cache   : {warm_status:.2f} s for the whole project (incl. Python start-up)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
