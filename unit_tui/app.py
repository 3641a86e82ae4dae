"""The UNIT Trainer terminal app.

One factory, :func:`create_app`, serves the CLI (``unit-trainer tui DIR`` and
``unit-trainer`` alone, through :func:`run_app`), the tests and the demo.

Screens: the live capture checklist (:mod:`unit_tui.screens.checklist`), the project
picker and the new-project setup. Importing this module never imports torch, so the
first frame appears at once.
"""
from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from themes import APP_CSS, DEFAULT_THEME, THEMES, UNIT_DARK, other_theme, register_themes

from .project import Project, ProjectError
from .screens.checklist import ChecklistScreen
from .screens.picker import PickerScreen, remember_project


class UnitTrainerApp(App[None]):
    """Capture checklist and project set-up for UNIT Trainer."""

    CSS_PATH = APP_CSS
    TITLE = "UNIT Trainer"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("t", "toggle_theme", "Theme"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, project_dir: Path | None = None, theme: str | None = None) -> None:
        super().__init__()
        register_themes(self)
        self._theme_warning: str | None = None
        wanted = theme or DEFAULT_THEME
        if wanted not in self.available_themes:
            self._theme_warning = (f"unknown theme {wanted!r}; using {DEFAULT_THEME}"
                                   f" (themes: {', '.join(t.name for t in THEMES)}).")
            wanted = DEFAULT_THEME
        self.theme = wanted
        self.project_dir = Path(project_dir).expanduser() if project_dir is not None else None

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Our meaning-based variables, for any theme that does not define them (e.g. a
        # built-in Textual theme chosen from the command palette).
        return dict(UNIT_DARK.variables)

    def on_mount(self) -> None:
        if self._theme_warning:
            self.notify(self._theme_warning, severity="warning")
        if self.project_dir is None:
            self.show_picker()
            return
        error = self.open_project(self.project_dir)
        if error:
            self.show_picker(error=error)

    # ------------------------------------------------------------------ projects
    def check_project(self, path: Path) -> str | None:
        """Why ``path`` cannot be opened, or None when it can."""
        try:
            Project.open(path)
        except ProjectError as exc:
            return str(exc)
        return None

    def open_project(self, path: Path) -> str | None:
        """Show the checklist of the project in ``path`` (replacing the current screen).

        Returns the reason when it cannot be opened (nothing changes then).
        """
        try:
            project = Project.open(path)
        except ProjectError as exc:
            return str(exc)
        remember_project(project.root)
        screen = ChecklistScreen(project)
        if isinstance(self.screen, ChecklistScreen):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)
        return None

    def _opened(self, path: Path | None) -> None:
        if path is None:
            return
        error = self.open_project(path)
        if error:
            self.show_picker(error=error)

    def show_picker(self, can_cancel: bool = False, error: str | None = None) -> None:
        self.push_screen(PickerScreen(can_cancel=can_cancel, error=error), self._opened)

    def show_setup(self) -> None:
        from .screens.setup import SetupScreen

        self.push_screen(SetupScreen(), self._opened)

    # ------------------------------------------------------------------ actions
    def action_toggle_theme(self) -> None:
        self.theme = other_theme(self.theme)


def create_app(project_dir: Path | None = None, theme: str | None = None) -> UnitTrainerApp:
    """The app, opened on ``project_dir``'s checklist (or the project picker)."""
    return UnitTrainerApp(project_dir=project_dir, theme=theme)


def run_app(project_dir: Path | None = None, theme: str | None = None) -> None:
    """Run the app in this terminal until the user quits (the CLI's entry point)."""
    # Training runs use multiprocessing; its resource tracker must start before the
    # app takes over the terminal, or it fails inside a running Textual app.
    try:
        import multiprocessing.resource_tracker as resource_tracker

        resource_tracker.ensure_running()
    except Exception:  # noqa: BLE001 - only training needs it; the checklist works without
        pass
    create_app(project_dir, theme=theme).run()


__all__ = ["UnitTrainerApp", "create_app", "run_app"]
