"""Copying a file name so the user can paste it into Logic's bounce dialog.

Two routes, because the user works both at the Mac and over SSH:

* OSC 52 through Textual's ``App.copy_to_clipboard``: the terminal puts the text on
  the clipboard of the machine the user sits at. Works over SSH in terminals that
  support it (iTerm2, kitty, WezTerm, Alacritty, Windows Terminal, ...). Inside tmux it
  needs ``set -g set-clipboard on``. macOS Terminal.app ignores it.
* pyperclip (``pbcopy`` on macOS, xclip/xsel/wl-copy on Linux) — only when the
  session is local: over SSH it would fill the clipboard of the remote machine.
  A missing backend is reported, never raised.

The caller always shows the name on screen as well, so it can be typed by hand when
neither route reaches the user's clipboard.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

#: Set to 1 to never touch the system clipboard (tests set it).
NO_SYSTEM_CLIPBOARD_ENV = "UNIT_TRAINER_NO_SYSTEM_CLIPBOARD"


def over_ssh(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process runs in an SSH session."""
    env = os.environ if environ is None else environ
    return bool(env.get("SSH_CONNECTION") or env.get("SSH_TTY") or env.get("SSH_CLIENT"))


def use_system_clipboard(environ: Mapping[str, str] | None = None) -> bool:
    """Whether to also copy with pyperclip: only in a local session."""
    env = os.environ if environ is None else environ
    if env.get(NO_SYSTEM_CLIPBOARD_ENV, "").strip() not in ("", "0"):
        return False
    return not over_ssh(env)


def copy_with_pyperclip(text: str) -> tuple[bool, str]:
    """Copy with pyperclip. Returns (copied, detail); never raises."""
    try:
        import pyperclip
    except Exception as exc:  # noqa: BLE001 - an optional route
        return False, f"pyperclip unavailable ({exc})"
    try:
        pyperclip.copy(text)
    except Exception as exc:  # noqa: BLE001 - PyperclipException or a backend failure
        return False, f"no system clipboard ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return True, "system clipboard"


def tmux_clipboard_hint(environ: Mapping[str, str] | None = None) -> str | None:
    """Inside tmux with ``set-clipboard off``: the one line that makes OSC 52 work."""
    env = os.environ if environ is None else environ
    if not env.get("TMUX") or shutil.which("tmux") is None:
        return None
    try:
        out = subprocess.run(
            ["tmux", "show-options", "-gv", "set-clipboard"], capture_output=True, text=True, timeout=2,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if out in ("off", "external"):
        return (f"tmux has set-clipboard {out}: run `tmux set -g set-clipboard on` (and add it to ~/.tmux.conf)"
                " so copied names reach your clipboard.")
    return None


__all__ = ["NO_SYSTEM_CLIPBOARD_ENV", "copy_with_pyperclip", "over_ssh", "tmux_clipboard_hint", "use_system_clipboard"]
