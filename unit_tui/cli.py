"""The ``unit-trainer`` command line: every step of the workflow, scriptable over SSH.

Importing this module is cheap (no Textual, no torch): sub-commands import what they
need when they run.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

EXIT_USAGE = 2
DEMO_TRAIN_MINUTES = 1.5


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _fmt_setting(setting: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:g}" for k, v in setting.items())


# ---------------------------------------------------------------------------- commands


def cmd_new(args) -> int:
    from .project import Project
    from .rig import template_text

    if args.rig:
        rig_path = Path(args.rig).expanduser()
        try:
            text = rig_path.read_text("utf-8")
        except OSError as exc:
            raise CliError(f"--rig {rig_path}: cannot read it ({exc.strerror}).") from None
        except UnicodeDecodeError:
            raise CliError(f"--rig {rig_path}: not a UTF-8 text file.") from None
        source = str(rig_path)
    else:
        text, source = template_text(args.template), f"template {args.template}"
    project = Project.create(Path(args.dir), text, source=source, input_wav=args.input)
    plan = project.plan()
    print(f"Created {project.root}")
    print(f"  rig: {project.rig_path.name}  test signal: {project.input_path.name}"
          f" ({'copied from ' + str(args.input) if args.input else 'generated'})")
    for msg in project.messages:
        print(f"  {msg}")
    for block in project.rig.blocks:
        caps = plan.for_block(block.id)
        n_sweep = sum(1 for c in caps if c.kind == "sweep")
        print(f"  {block.id}: {len(caps)} captures ({n_sweep} sweeps, {len(caps) - n_sweep} chaos)")
    print(f"Next: `unit-trainer tui {shlex.quote(str(project.root))}` shows the checklist.")
    return 0


def cmd_plan(args) -> int:
    from .plan import plan_json
    from .project import Project

    project = Project.open(args.dir)
    plan = project.plan()
    if args.json:
        print(json.dumps({"project": str(project.root), "captures": plan_json(plan), "notices": plan.notices}, indent=1))
        return 0
    for block in project.rig.blocks:
        caps = plan.for_block(block.id)
        print(f"{block.id} ({block.topology}): {len(caps)} captures")
        for c in caps:
            print(f"  {c.kind:<5}  {c.label:<14}  {c.relpath}")
            print(f"         {_fmt_setting(c.setting)}")
    for notice in plan.notices:
        print(f"note: {notice}")
    print(f"{len(plan.captures)} captures in all.")
    return 0


def cmd_status(args) -> int:
    from .checks import Status
    from .project import Project

    project = Project.open(args.dir)
    status = project.scan()
    if args.json:
        print(json.dumps(status.to_json(), indent=1))
        return 0
    left = status.count(Status.MISSING) + status.count(Status.INVALID)
    print(f"{status.ready}/{status.total} ready — about {left * project.minutes_per_capture():.0f} min of bouncing left")
    print("  " + "  ".join(f"{st.value}: {status.count(st)}" for st in Status if st != Status.EXTRA)
          + f"  extra: {len(status.extras)}")
    for s in status.states:
        if args.all or s.status != Status.READY:
            if s.status == Status.MISSING and not args.all:
                continue
            print(f"  {s.status.value:<8} {s.relpath}: {s.reason}")
            for extra in (s.result.problems[1:] + s.result.notes) if args.all or s.status != Status.READY else []:
                print(f"           {extra}")
    missing = [s for s in status.states if s.status == Status.MISSING]
    if missing and not args.all:
        print(f"  missing  {len(missing)} captures, next: {missing[0].relpath}")
    for s in status.extras:
        print(f"  extra    {s.relpath}: {s.reason}")
    for notice in status.notices:
        print(f"note: {notice}")
    return 0


def cmd_add_chaos(args) -> int:
    from .project import Project

    project = Project.open(args.dir)
    added = project.add_chaos(args.block, args.count)
    print(f"Added {len(added)} chaos presets to {args.block}: {added[0].filename} … {added[-1].filename}")
    return 0


def cmd_capture(args) -> int:
    from .capture import capture_missing
    from .project import Project

    project = Project.open(args.dir)
    if args.list_params:
        return _list_plugin_params(project, args)

    def progress(i: int, n: int, outcome) -> None:
        print(f"[{i:>3}/{n}] {outcome.capture.filename}: {outcome.message} ({outcome.seconds:.1f} s)", flush=True)

    try:
        if args.plugin is not None:
            from .capture import capture_missing_with_plugin
            from .plugin_host import PluginError

            try:
                outcomes = capture_missing_with_plugin(project, args.plugin or None, block_id=args.block,
                                                       limit=args.limit, on_progress=progress,
                                                       log=lambda line: print(line, flush=True))
            except PluginError as exc:
                raise CliError(str(exc)) from None
        else:
            outcomes = capture_missing(project, args.command, block_id=args.block, limit=args.limit,
                                       timeout_s=args.timeout, on_progress=progress)
    except KeyboardInterrupt:
        print("stopped: the capture being rendered was discarded (nothing is left under its name); run the same "
              "command again to go on.", file=sys.stderr, flush=True)
        return 130
    ok = sum(o.ok for o in outcomes)
    if ok:  # checks across captures (identical audio at different settings: a knob did nothing)
        from .checks import Status

        states = {s.relpath: s for s in project.scan().states}
        for o in outcomes:
            s = states.get(o.capture.relpath)
            if o.ok and s is not None and s.status == Status.INVALID:
                print(f"  invalid  {o.capture.filename}: {s.reason}", flush=True)
                ok -= 1
    print(f"{ok}/{len(outcomes)} captures rendered and ready." if outcomes else "Nothing to capture: no capture is missing.")
    return 0 if ok == len(outcomes) else 1


def _list_plugin_params(project, args) -> int:
    """capture --plugin [PATH] --list-params: the plugin's parameters, named as rig.toml may use them."""
    from .plugin_host import HostedPlugin, PluginError, resolve_plugin_path

    if args.plugin is None:
        raise CliError("--list-params lists a plugin's parameters: use it with --plugin PATH.")
    blocks = [project.rig.block(args.block)] if args.block else list(project.rig.blocks)
    seen: set = set()
    for block in blocks:
        spec = args.plugin or block.plugin
        if not spec:
            if args.block:
                raise CliError(f"block {block.id} names no plugin: give --plugin PATH.")
            continue
        path = resolve_plugin_path(spec, project.root)
        if (path, block.plugin_name) in seen:
            continue
        seen.add((path, block.plugin_name))
        try:
            host = HostedPlugin(path, block.plugin_name)
        except PluginError as exc:
            raise CliError(str(exc)) from None
        print(f"{host.name} ({path}): {len(host.params)} parameters. In rig.toml, plugin_param / plugin_params take "
              "the first name or the plugin's own (quoted) name; values are in the units shown.")
        for line in host.describe():
            print(f"  {line}")
    if not seen:
        raise CliError("no block names a plugin: give --plugin PATH.")
    return 0


def cmd_train(args) -> int:
    import signal
    import time

    from .project import Project

    project = Project.open(args.dir)
    blocks = [project.rig.block(args.block)] if args.block else list(project.rig.blocks)
    from dsp.parallel import default_processes

    try:  # a bad UNIT_FIT_PROCESSES is said before any work, not as a traceback mid-fit
        default_processes()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    stop = {"flag": False}

    def on_sigint(signum, frame):  # first Ctrl-C: stop after a checkpoint; second: abort
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        print("\nstopping after the next checkpoint... (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, on_sigint)
    last = {"t": 0.0}

    def progress(ev) -> None:
        now = time.monotonic()
        if now - last["t"] < args.every and ev.step != ev.total:
            return
        last["t"] = now
        parts = [f"{ev.stage:<11} {ev.step:>5}/{ev.total:<5}"]
        if ev.loss is not None:
            parts.append(f"loss {ev.loss:.4g}")
        if ev.train_esr is not None:
            parts.append(f"train ESR {ev.train_esr:.4f}")
        if ev.holdout_esr is not None:
            parts.append(f"held-out ESR {ev.holdout_esr:.4f}")
        if ev.eta_s is not None:
            parts.append(f"ETA {ev.eta_s / 60:.1f} min")
        if ev.detail:
            parts.append(ev.detail)
        print("  " + "  ".join(parts), flush=True)

    def on_block(block_id: str) -> None:
        print(f"{block_id} ({project.rig.block(block_id).topology}): training", flush=True)

    def on_result(block_id: str, fitted, meta) -> None:
        if meta["resumed"]:
            print("  (resumed from the last checkpoint)")
        _print_report(block_id, fitted.report())
        print(f"  model: {fitted.status}, saved in .unit/models/{block_id}.twin.json", flush=True)

    from .jobrunner import run_training
    from .jobs import JobRunning

    try:
        info = run_training(project, [b.id for b in blocks], minutes=args.minutes, seed=args.seed,
                            fresh=args.fresh, should_stop=lambda: stop["flag"], on_progress=progress,
                            on_block=on_block, on_result=on_result)
    except JobRunning as exc:
        raise CliError(f"{exc} Watch it with `unit-trainer monitor {shlex.quote(str(project.root))}`.") from None
    finally:
        signal.signal(signal.SIGINT, old)
    if info.state == "cancelled" or stop["flag"]:
        print("stopped; `unit-trainer train` again resumes from the checkpoint.")
        return 130
    return 0


def _verdict_line(esr: float | None) -> str:
    if esr is None:
        return "n/a"
    from dsp.losses import verdict

    return f"{esr:.4f} ({verdict(esr)})"


def _print_report(block_id: str, rep: dict | None) -> None:
    if rep is None:
        print(f"{block_id}: not trained yet")
        return
    train, hold = rep.get("train") or {}, rep.get("holdout") or {}
    print(f"{block_id}: train ESR median {_verdict_line(train.get('median'))}")
    if hold:
        print(f"  held-out ESR (settings never trained on): median {_verdict_line(hold.get('median'))},"
              f" worst {_verdict_line(hold.get('worst'))}")
    else:
        print("  no held-out captures: add chaos presets (add-chaos) to measure accuracy at unseen settings")
    g_train, g_hold = rep.get("train_guitar") or {}, rep.get("holdout_guitar") or {}
    if g_train or g_hold:
        parts = []
        if g_hold:
            parts.append(f"held-out median {_verdict_line(g_hold.get('median'))}, "
                         f"worst {_verdict_line(g_hold.get('worst'))}")
        if g_train:
            parts.append(f"train median {_verdict_line(g_train.get('median'))}")
        print("  on the test signal's guitar segments alone (what a player hears): " + "; ".join(parts))
    if rep.get("structure"):
        print("  structure: " + ", ".join(f"{k} {v}" for k, v in rep["structure"].items())
              + " (set them in the rig: structure = { ... })")
    if rep.get("sections"):
        sec = rep["sections"]
        on = [k for k, v in sec.items() if v]
        print(f"  output sections decided from the captures: {', '.join(on) if on else 'none'} on"
              + (f"; {', '.join(k for k in sec if not sec[k])} off" if len(on) < len(sec) else ""))
    if rep.get("affects"):
        print("  knobs drive: " + "; ".join(f"{k} -> {', '.join(v)}" for k, v in rep["affects"].items())
              + " (the rig's affects = [...] sets them)")
    items = sorted(rep.get("items") or [], key=lambda it: -(it.get("esr") or 0))
    for it in items:
        tag = " (held out)" if it.get("holdout") else ""
        gtr = f"  guitar {it['guitar_esr']:.4f}" if it.get("guitar_esr") is not None else ""
        print(f"    {it['name']:<40} {_verdict_line(it.get('esr'))}{gtr}{tag}")


def cmd_report(args) -> int:
    from .project import Project
    from .training import project_report

    project = Project.open(args.dir)
    rep = project_report(project)
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    for block_id, r in rep.items():
        _print_report(block_id, r)
    return 0


def cmd_render(args) -> int:
    from .project import Project
    from .training import parse_settings, render_file

    project = Project.open(args.dir)
    block = project.rig.block(args.block)
    setting = parse_settings(block, args.set or [])
    render_file(project, block.id, setting, Path(args.input), Path(args.output))
    print(f"Wrote {args.output}: {block.id} at {_fmt_setting(setting)}")
    return 0


def cmd_export(args) -> int:
    from dsp.export import export_project_models

    from .project import Project
    from .training import load_model, model_path

    project = Project.open(args.dir)
    out = Path(args.out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"--out {out} exists and is not empty; choose a new folder (nothing was overwritten).")
    blocks = [b for b in project.rig.blocks if model_path(project, b.id).is_file()]
    if not blocks:
        raise CliError(f"no trained block in {project.root}; run `unit-trainer train` first.")
    models = {b.id: load_model(project, b.id) for b in blocks}
    paths = export_project_models(models, project.rig, out)
    skipped = [b.id for b in project.rig.blocks if b not in blocks]
    print(f"Exported {', '.join(models)} to {out}")
    for role in ("model", "engine", "embedded", "golden", "juce_cmake", "readme"):
        if role in paths:
            print(f"  {role:<10} {paths[role]}")
    if skipped:
        print(f"  not trained yet (left out): {', '.join(skipped)}")
    return 0


def cmd_tui(args) -> int:
    from .app import run_app

    project_dir = Path(args.dir).expanduser() if getattr(args, "dir", None) else None
    if project_dir is not None:
        from .project import Project

        Project.open(project_dir)  # a clear error before the screen opens
    run_app(project_dir)
    return 0


def cmd_monitor(args) -> int:
    from .jobs import read_job
    from .project import Project

    project = Project.open(args.dir)
    if not args.lines:
        from .app import run_app

        run_app(project.root, start="training")
        return 0
    return _monitor_lines(project.root, read_job, follow=not args.once)


def _monitor_lines(root: Path, read_job, follow: bool = True) -> int:
    """Print the job's progress as lines until it ends (Ctrl-C stops watching, not the job)."""
    import time

    from .jobs import ProgressTail, fmt_eta

    info = read_job(root)
    if info is None:
        print("No training job has run in this project yet: `unit-trainer train DIR` or the TUI (T) starts one.")
        return 1
    tail = ProgressTail(root)
    try:
        while True:
            _reset, events = tail.read()
            for ev in events:
                kind = ev.get("type")
                if kind == "job":
                    print(f"job pid {ev.get('pid')}: {ev.get('message', '')}", flush=True)
                elif kind == "block":
                    print(f"{ev['block']}: training{' (resumed)' if ev.get('resumed') else ''}", flush=True)
                elif kind == "progress" and (follow or ev.get("step") == ev.get("total")):
                    parts = [f"{ev.get('stage', ''):<11} {ev.get('step', 0):>5}/{ev.get('total', 0):<5}"]
                    if ev.get("train_esr") is not None:
                        parts.append(f"train ESR {ev['train_esr']:.4f}")
                    if ev.get("holdout_esr") is not None:
                        parts.append(f"held-out ESR {ev['holdout_esr']:.4f}")
                    parts.append(fmt_eta(ev.get("eta_s")))
                    if ev.get("detail"):
                        parts.append(ev["detail"])
                    print("  " + "  ".join(parts), flush=True)
                elif kind == "result":
                    _print_report(ev["block"], ev.get("report"))
                elif kind == "end":
                    print(f"job {ev.get('state')}{': ' + ev['error'] if ev.get('error') else ''}", flush=True)
            info = read_job(root)
            if not follow or info is None or not info.alive:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopped watching; the job goes on.")
        return 0
    if info is not None and info.interrupted:
        print(f"job interrupted: pid {info.pid} is gone; `unit-trainer train` or the TUI resumes from the checkpoint.")
    return 0


def cmd_demo(args) -> int:
    from .demo import make_demo, start_demo_training

    root = make_demo(Path(args.dir).expanduser(), log=print)
    # --no-tui only makes the project (scripts, benchmarks) unless --minutes asks for training.
    minutes = args.minutes if args.minutes is not None else (0.0 if args.no_tui else DEMO_TRAIN_MINUTES)
    started = False
    if minutes > 0:
        started = start_demo_training(root, minutes, log=print)
    if args.no_tui:
        return 0
    from .app import run_app

    run_app(root, start="training" if started else "checklist", auto_results=started,
            train_minutes=minutes or None)
    return 0


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unit-trainer",
        description="Capture a guitar rig knob by knob, fit a grey-box twin, export plain DSP code.",
    )
    sub = p.add_subparsers(dest="command_name", metavar="COMMAND")

    s = sub.add_parser("new", help="create a project folder with its capture folders")
    s.add_argument("dir", help="the new project folder (must not exist, or be empty)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--template", choices=["unit1"], help="a built-in rig")
    g.add_argument("--rig", help="a rig TOML file")
    s.add_argument("--input", help="the test signal to copy in (e.g. the NAM trainer's input.wav); generated when left out")
    s.set_defaults(func=cmd_new)

    s = sub.add_parser("plan", help="list every capture with its full knob setting")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("status", help="which captures are ready, missing or invalid, and why")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.add_argument("--all", action="store_true", help="list ready captures too")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("add-chaos", help="append chaos presets to a block (existing ones never change)")
    s.add_argument("dir")
    s.add_argument("--block", required=True)
    s.add_argument("--count", type=int, required=True)
    s.set_defaults(func=cmd_add_chaos)

    s = sub.add_parser("capture", help="render every missing capture with a command or through a VST3/AU plugin")
    s.add_argument("dir")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--command", help="shell template; see README 'Automatic capture' for placeholders")
    g.add_argument("--plugin", nargs="?", const="", metavar="PATH",
                   help="host this VST3 (AU on macOS) plugin with pedalboard, its parameters set from rig.toml's "
                        "plugin_param mapping; without PATH: each block's plugin = \"...\" from rig.toml")
    s.add_argument("--block", help="only this block")
    s.add_argument("--limit", type=int, help="at most this many captures")
    s.add_argument("--timeout", type=float, default=600.0,
                   help="with --command: seconds allowed per capture (default 600)")
    s.add_argument("--list-params", action="store_true",
                   help="with --plugin: list the plugin's parameters (names and ranges for rig.toml) and exit")
    s.set_defaults(func=cmd_capture)

    s = sub.add_parser("train", help="fit the twin of each block (headless; progress lines)")
    s.add_argument("dir")
    s.add_argument("--block", help="only this block")
    s.add_argument("--minutes", type=float, help="wall-clock budget for the whole run")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fresh", action="store_true", help="ignore the checkpoint and start over")
    s.add_argument("--every", type=float, default=2.0, help="seconds between progress lines (default 2)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("render", help="render a WAV through the twin at any setting, captured or not")
    s.add_argument("dir")
    s.add_argument("--block", required=True)
    s.add_argument("--set", action="append", metavar="KNOB=VALUE", help="a knob's value (repeat); others at reference")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.set_defaults(func=cmd_render)

    s = sub.add_parser("report", help="per-capture and held-out ESR of the trained twins")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("export", help="write model.json, the C++ engine, golden vectors and a JUCE project")
    s.add_argument("dir")
    s.add_argument("--out", required=True, help="a new (or empty) folder")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("tui", help="open the checklist of a project")
    s.add_argument("dir")
    s.set_defaults(func=cmd_tui)

    s = sub.add_parser("monitor", help="watch the project's training job (the TUI's training screen)")
    s.add_argument("dir")
    s.add_argument("--lines", action="store_true", help="print progress lines instead of opening the TUI")
    s.add_argument("--once", action="store_true", help="with --lines: print what happened so far and exit")
    s.set_defaults(func=cmd_monitor)

    s = sub.add_parser("demo", help="make a demo project rendered by a built-in virtual rig and open it")
    s.add_argument("dir", nargs="?", default="unit-trainer-demo")
    s.add_argument("--no-tui", action="store_true", help="only make the project (no training unless --minutes)")
    s.add_argument("--minutes", type=float, default=None,
                   help=f"budget of the demo's background training (default {DEMO_TRAIN_MINUTES:g}; 0: none)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .capture import CaptureCommandError
    from .plan import PlanError
    from .project import ProjectError
    from .rig import RigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args.func, args.dir = cmd_tui, None
    try:
        return args.func(args)
    except (CliError, ProjectError, RigError, PlanError, CaptureCommandError) as exc:
        print(f"unit-trainer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("unit-trainer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
