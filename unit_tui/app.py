"""The UNIT Trainer terminal app.

One factory, :func:`create_app`, serves the CLI (``unit-trainer tui DIR`` and
``unit-trainer`` alone, through :func:`run_app`), the tests and the demo.

Screens: the live capture checklist (:mod:`unit_tui.screens.checklist`), the project
picker, the new-project setup, the training job (:mod:`unit_tui.screens.training`) and
the results (:mod:`unit_tui.screens.results`). Importing this module never imports torch, so the
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

    def __init__(self, project_dir: Path | None = None, theme: str | None = None, *, start: str = "checklist",
                 train_minutes: float | None = None, auto_results: bool = False) -> None:
        super().__init__()
        self.start_screen = start  # "checklist", "training" or "results"
        self.train_minutes = train_minutes
        self.auto_results = auto_results
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
        start, self.start_screen = self.start_screen, "checklist"  # only for the first project
        if start == "training":
            self.show_training(project)
        elif start == "results":
            self.show_results(project)
        return None

    def show_training(self, project: Project) -> None:
        """The training screen of ``project`` (attaches to its job, or offers to start one)."""
        from .screens.training import TrainingScreen

        self.push_screen(TrainingScreen(project, minutes=self.train_minutes, auto_results=self.auto_results))

    def show_results(self, project: Project) -> None:
        from .screens.results import ResultsScreen
        from .training import model_path

        trained = [b.id for b in project.rig.blocks if model_path(project, b.id).is_file()]
        if not trained:
            self.notify("No trained model yet: opening the training screen.", title="Results")
            self.show_training(project)
            return
        self.push_screen(ResultsScreen(project, trained[0]))

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


def create_app(project_dir: Path | None = None, theme: str | None = None, *, start: str = "checklist",
               train_minutes: float | None = None, auto_results: bool = False) -> UnitTrainerApp:
    """The app, opened on ``project_dir``'s checklist (or the project picker).

    ``start="training"`` opens the training screen over the checklist (``monitor``, the
    demo), ``"results"`` the results; ``train_minutes`` is the budget a start from the
    training screen uses; ``auto_results`` opens the results when the watched job completes.
    """
    return UnitTrainerApp(project_dir=project_dir, theme=theme, start=start, train_minutes=train_minutes,
                          auto_results=auto_results)


def run_app(project_dir: Path | None = None, theme: str | None = None, **options) -> None:
    """Run the app in this terminal until the user quits (the CLI's entry point)."""
    # Training runs use multiprocessing; its resource tracker must start before the
    # app takes over the terminal, or it fails inside a running Textual app.
    try:
        import multiprocessing.resource_tracker as resource_tracker

        resource_tracker.ensure_running()
    except Exception:  # noqa: BLE001 - only training needs it; the checklist works without
        pass
    create_app(project_dir, theme=theme, **options).run()


__all__ = ["UnitTrainerApp", "create_app", "run_app"]
