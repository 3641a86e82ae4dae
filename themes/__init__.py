"""The app's themes: "unit-dark" (default, Helix-like: charcoal with an orange accent)
and "unit-light".

Colours live here as Textual :class:`~textual.theme.Theme` objects; layout lives in
``themes/app.tcss``, which refers to colours only through theme variables. Besides
Textual's own variables ($primary, $accent, $success, ...) every theme defines the
meaning-based variables the checklist uses::

    $status-ready     a capture that passed its checks
    $status-missing   not bounced yet
    $status-writing   a file still being written (a bounce in progress)
    $status-invalid   a file that failed a check (the reason is shown)
    $status-extra     a file that matches no capture
    $setting-moved    the knob a sweep moves
    $setting-fixed    knobs that are not modelled (held at a fixed value)
    $copied           the "Copied: ..." line

Importing this module is cheap (no Textual app is created).
"""
from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parent
APP_CSS = THEMES_DIR / "app.tcss"

DARK = "unit-dark"
LIGHT = "unit-light"
DEFAULT_THEME = DARK

#: Meaning-based variables every theme must define (app.tcss uses them).
SEMANTIC_VARIABLES = (
    "status-ready", "status-missing", "status-writing", "status-invalid", "status-extra",
    "setting-moved", "setting-fixed", "copied",
)

UNIT_DARK = Theme(
    name=DARK,
    dark=True,
    # Helix hardware: charcoal panels, orange selection, warm white text.
    primary="#f28c28",
    secondary="#8a6d4b",
    accent="#ff9e3d",
    foreground="#e8e4dc",
    background="#1c1c1e",
    surface="#252527",
    panel="#2f2f32",
    success="#7bc96f",
    warning="#f2c14e",
    error="#ef5b5b",
    variables={
        "status-ready": "#7bc96f",
        "status-missing": "#9a968f",
        "status-writing": "#f2c14e",
        "status-invalid": "#ef5b5b",
        "status-extra": "#6fb3d9",
        "setting-moved": "#ff9e3d",
        "setting-fixed": "#7d7a74",
        "copied": "#ff9e3d",
        "block-cursor-background": "#f28c28 35%",
        "block-cursor-foreground": "#fffaf2",
        "block-cursor-text-style": "bold",
        "footer-key-foreground": "#ff9e3d",
        "input-selection-background": "#f28c28 35%",
    },
)

UNIT_LIGHT = Theme(
    name=LIGHT,
    dark=False,
    primary="#c2610c",
    secondary="#8a6d4b",
    accent="#b85a00",
    foreground="#1f1d1a",
    background="#f4f1ec",
    surface="#ebe6de",
    panel="#ded7cb",
    success="#2e7d32",
    warning="#a66a00",
    error="#c62828",
    variables={
        "status-ready": "#2e7d32",
        "status-missing": "#6b665e",
        "status-writing": "#a66a00",
        "status-invalid": "#c62828",
        "status-extra": "#1f6f9e",
        "setting-moved": "#b85a00",
        "setting-fixed": "#8c867c",
        "copied": "#b85a00",
        "block-cursor-background": "#c2610c 30%",
        "block-cursor-foreground": "#1f1d1a",
        "block-cursor-text-style": "bold",
        "footer-key-foreground": "#b85a00",
        "input-selection-background": "#c2610c 30%",
    },
)

THEMES = (UNIT_DARK, UNIT_LIGHT)


def register_themes(app) -> None:
    """Register every UNIT theme with a Textual ``App``."""
    for theme in THEMES:
        app.register_theme(theme)


def other_theme(name: str) -> str:
    """The theme ``t`` switches to from ``name``."""
    return LIGHT if name == DARK else DARK


__all__ = [
    "APP_CSS", "DARK", "DEFAULT_THEME", "LIGHT", "SEMANTIC_VARIABLES", "THEMES", "UNIT_DARK", "UNIT_LIGHT",
    "other_theme", "register_themes",
]
