"""The checklist table: one row per capture (and per extra file), updated in place."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

#: How each status is shown (a glyph too, so it reads without colour).
STATUS_LABELS = {
    "ready": "✓ ready",
    "missing": "· missing",
    "writing": "… writing",
    "invalid": "✗ invalid",
    "extra": "? extra",
    "checking": "checking",
}

COLUMNS = (
    ("status", "Status"),
    ("block", "Block"),
    ("kind", "Kind"),
    ("moved", "Setting"),
    ("file", "File name"),
    ("folder", "Folder"),
)


@dataclass(frozen=True)
class Row:
    """What one table row shows. ``key`` is the capture's relative path."""

    key: str
    status: str
    block: str
    kind: str
    moved: str
    file: str
    folder: str
    block_id: str = ""  # not shown: what the block filter matches

    def cells(self) -> dict[str, str]:
        return {"block": self.block, "kind": self.kind, "moved": self.moved, "file": self.file, "folder": self.folder}


class CaptureTable(DataTable):
    """A :class:`DataTable` of captures whose status cells are coloured by theme.

    Colours come from the component classes ``capture-table--<status>`` (set in the
    app's ``.tcss`` from the theme's ``$status-*`` variables). :meth:`show` keeps the
    cursor on the same capture when rows change, and updates cells in place when the
    set of rows is unchanged.
    """

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {
        "capture-table--ready",
        "capture-table--missing",
        "capture-table--writing",
        "capture-table--invalid",
        "capture-table--extra",
        "capture-table--checking",
    }

    DEFAULT_CSS = """
    CaptureTable > .capture-table--ready { color: $success; text-style: bold; }
    CaptureTable > .capture-table--missing { color: $text-muted; }
    CaptureTable > .capture-table--writing { color: $warning; text-style: italic; }
    CaptureTable > .capture-table--invalid { color: $error; text-style: bold; }
    CaptureTable > .capture-table--extra { color: $secondary; }
    CaptureTable > .capture-table--checking { color: $text-muted; text-style: italic; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: dict[str, Row] = {}
        self._keys: list[str] = []

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key, width=9 if key == "status" else None)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.call_after_refresh(self.restyle))

    # ------------------------------------------------------------------ reading
    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    @property
    def cursor_key(self) -> str | None:
        if not self._keys or not 0 <= self.cursor_row < len(self._keys):
            return None
        return self._keys[self.cursor_row]

    def row(self, key: str) -> Row | None:
        return self._rows.get(key)

    # ------------------------------------------------------------------ writing
    def status_text(self, status: str) -> Text:
        style = self.get_component_rich_style(f"capture-table--{status}", partial=True)
        return Text(STATUS_LABELS.get(status, status), style=style, no_wrap=True, end="")

    def show(self, rows: list[Row]) -> None:
        """Show ``rows`` (in order), keeping the cursor on the same capture."""
        keys = [r.key for r in rows]
        if keys == self._keys:
            for r in rows:
                old = self._rows.get(r.key)
                if old == r:
                    continue
                if old is None or old.status != r.status:
                    self.update_cell(r.key, "status", self.status_text(r.status))
                new_cells, old_cells = r.cells(), (old.cells() if old else {})
                for col, value in new_cells.items():
                    if old_cells.get(col) != value:
                        self.update_cell(r.key, col, _plain(value), update_width=True)
                self._rows[r.key] = r
            return
        current, index = self.cursor_key, self.cursor_row
        self.clear()
        self._rows = {r.key: r for r in rows}
        self._keys = keys
        for r in rows:
            self.add_row(self.status_text(r.status), *(_plain(v) for v in r.cells().values()), key=r.key)
        if not rows:
            return
        if current in self._rows:
            target = keys.index(current)
        else:
            target = min(max(index, 0), len(rows) - 1)
        self.move_cursor(row=target, animate=False, scroll=True)

    def move_to(self, key: str) -> bool:
        """Put the cursor on the row of ``key``; False when it is not shown."""
        try:
            index = self._keys.index(key)
        except ValueError:
            return False
        self.move_cursor(row=index, animate=False, scroll=True)
        return True

    def restyle(self) -> None:
        """Re-colour every status cell (after a theme change)."""
        for key, r in self._rows.items():
            try:
                self.update_cell(key, "status", self.status_text(r.status))
            except RowDoesNotExist:
                pass


def _plain(value: str) -> Text:
    return Text(value, no_wrap=True, end="")


__all__ = ["COLUMNS", "CaptureTable", "Row", "STATUS_LABELS"]
