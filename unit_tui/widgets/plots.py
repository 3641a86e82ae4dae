"""Line plots in the terminal: a :class:`textual_plotext.PlotextPlot` that owns its own
``plt`` (never the global ``plotext``), redraws on resize and theme change, and takes
its line colours from the app's theme."""
from __future__ import annotations

from dataclasses import dataclass, field

from textual.color import Color
from textual_plotext import PlotextPlot

# Theme variables used for successive lines (meaning-free: first, second, ...).
LINE_VARIABLES = ("primary", "accent", "secondary", "warning", "success", "error")


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    marker: str = "braille"


@dataclass
class Figure:
    """What a :class:`LinePlot` shows: plain data, so tests can look at it."""

    title: str = ""
    series: list[Series] = field(default_factory=list)
    xlabel: str = ""
    ylabel: str = ""
    xscale: str = "linear"
    yscale: str = "linear"
    empty_note: str = "no data yet"

    @property
    def points(self) -> int:
        return sum(len(s.xs) for s in self.series)


class LinePlot(PlotextPlot):
    """A plot of a :class:`Figure` (call :meth:`show`)."""

    DEFAULT_CSS = """
    LinePlot { height: 1fr; min-height: 6; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.figure = Figure()
        self.draws = 0
        self.render_error: str | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())

    def show(self, figure: Figure) -> None:
        self.figure = figure
        self._draw()

    def render(self):
        # plotext applies its log scales to the stored data in place when it builds, so
        # the data is plotted afresh for every render (a second build would log twice).
        try:
            self._plot_figure()
            return super().render()
        except Exception as exc:  # noqa: BLE001 - plotext fails on some tiny sizes: never crash the app
            from rich.text import Text

            self.render_error = f"{type(exc).__name__}: {exc} at {self.size}"
            return Text(f"{self.figure.title} (no room to draw the plot at {self.size.width}×{self.size.height})")

    def _colour(self, i: int):
        name = LINE_VARIABLES[i % len(LINE_VARIABLES)]
        try:
            return Color.parse(self.app.theme_variables.get(name, "white")).rgb
        except Exception:  # noqa: BLE001 - a theme without that variable
            return "white"

    def _draw(self) -> None:
        self.render_error = None
        self.draws += 1
        self.refresh()

    def _plot_figure(self) -> None:
        fig = self.figure
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(fig.title)
        plt.xlabel(fig.xlabel)
        plt.ylabel(fig.ylabel)
        data = [s for s in fig.series if s.xs]
        if fig.yscale == "log":
            data = [Series(s.label, [x for x, y in zip(s.xs, s.ys) if y > 0], [y for y in s.ys if y > 0], s.marker)
                    for s in data]
            data = [s for s in data if s.xs]
        if not data:
            plt.title(f"{fig.title} — {fig.empty_note}" if fig.title else fig.empty_note)
        else:
            plt.xscale(fig.xscale)
            plt.yscale(fig.yscale)
            for i, s in enumerate(data):
                plt.plot(list(s.xs), list(s.ys), label=s.label, marker=s.marker, color=self._colour(i))
            lo = min(min(s.ys) for s in data)
            hi = max(max(s.ys) for s in data)
            if fig.yscale != "log" and hi - lo <= 1e-12 * max(1.0, abs(hi)):
                pad = max(abs(hi) * 0.05, 1e-3)  # a flat line: plotext needs a y range
                plt.ylim(lo - pad, hi + pad)


__all__ = ["Figure", "LinePlot", "Series"]
