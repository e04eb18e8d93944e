"""The pieces every poolctl view is drawn with: value formats, state colours, and `FitTable`,
a table that fits the terminal by cutting and dropping its least useful columns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "queued": "cyan",
    "resolving": "blue",
    "downloading": "bold blue",
    "verifying": "magenta",
    "done": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "paused": "yellow",
    "skipped": "dim",
    # library entries (docs/interface.md §8)
    "downloaded": "green",
    "adopted": "green",
    "deleted": "dim",
    "lost": "bold red",
}
ACTIVE = ("resolving", "downloading", "verifying")
FINISHED = ("done", "failed", "cancelled", "skipped")


def fmt_size(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def fmt_rate(bps: float | None) -> str:
    return "-" if not bps else f"{fmt_size(bps)}/s"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    now = time.time() if now is None else now
    return f"{fmt_duration(max(0.0, now - ts))} ago"


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def state_counts(label: str, counts: dict[str, int] | None, empty: str) -> Text:
    """`label` then "N state" for each state with entries, comma-separated, or `empty`."""
    line = Text(label)
    shown = [(state, n) for state, n in (counts or {}).items() if n]
    if not shown:
        line.append(empty)
    for i, (state, n) in enumerate(shown):
        if i:
            line.append(", ")
        line.append(f"{n} ", style="bold")
        line.append(state, style=STATE_STYLES.get(state, ""))
    return line


def text_or_dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


@dataclass(frozen=True, slots=True)
class Col:
    """One column of a `FitTable`: its header and how it gives way when the width is short."""

    header: str
    #: 0: always shown. Otherwise the order in which columns are dropped as the width shrinks
    #: (1 goes first); an empty one goes as soon as any value would have to be cut.
    drop: int = 0
    #: 0: values are shown whole. Otherwise values are cut with "…" down to this many cells
    #: before any column is dropped (and below it only when nothing is left to drop).
    shrink_to: int = 0
    justify: JustifyMethod = "left"
    #: The width of a column of drawings (a progress bar), which have no text to measure.
    width: int = 0


#: What a rich Table with the default box and padding adds around its columns: each column has a
#: cell of padding either side and a rule after it, and the table one more rule at the left.
_PER_COLUMN, _EDGES = 3, 1
_BLANK = ("", "-")

Cell = str | Text | RenderableType


class FitTable:
    """A table that fits the width it is drawn at: one line per row, long values cut with "…",
    the least useful columns dropped first. Drawn wider than its values (`--wide`), it shows them
    whole."""

    def __init__(
        self,
        columns: Sequence[Col],
        rows: Iterable[Sequence[Cell]],
        *,
        title: str | None = None,
        caption: str | None = None,
    ) -> None:
        self.columns = list(columns)
        self.rows = [[_one_line(cell) for cell in row] for row in rows]
        self.title, self.caption = title, caption

    def natural_widths(self) -> list[int]:
        """Each column's width with every value whole (cells as rich counts them: CJK is 2)."""
        widths = []
        for i, col in enumerate(self.columns):
            cells = [_cell_width(row[i], col) for row in self.rows]
            widths.append(max([cell_len(col.header), *cells]))
        return widths

    def layout(self, max_width: int) -> list[tuple[int, int]]:
        """(column index, width) of the columns shown at `max_width`."""
        natural = self.natural_widths()
        cols = self.columns

        def need(i: int) -> int:
            return min(natural[i], cols[i].shrink_to) if cols[i].shrink_to else natural[i]

        def total(shown: Iterable[int], width: Callable[[int], int]) -> int:
            shown = list(shown)
            return sum(width(i) for i in shown) + _PER_COLUMN * len(shown) + _EDGES

        kept = list(range(len(cols)))
        if total(kept, natural.__getitem__) > max_width:
            # A column with nothing in it is never worth cutting a value for.
            kept = [i for i in kept if not (cols[i].drop and self._blank(i))]
        for i in sorted((i for i in kept if cols[i].drop), key=lambda i: cols[i].drop):
            if total(kept, need) <= max_width:
                break
            kept.remove(i)
        widths = {i: natural[i] for i in kept}
        excess = total(kept, widths.__getitem__) - max_width
        # Cut the column with the most to spare, one cell at a time: first down to each
        # column's minimum, then (nothing left to drop) further; rich squeezes the rest.
        for floor in (need, lambda i: 1):
            while excess > 0:
                spare = [i for i in kept if cols[i].shrink_to and widths[i] > floor(i)]
                if not spare:
                    break
                widest = max(spare, key=lambda i: widths[i] - floor(i))
                widths[widest] -= 1
                excess -= 1
        return [(i, widths[i]) for i in kept]

    def table(self, max_width: int) -> Table:
        """The rich Table for `max_width`."""
        table = Table(title=self.title, title_justify="left", caption=self.caption)
        shown = self.layout(max_width)
        for i, width in shown:
            col = self.columns[i]
            table.add_column(
                col.header, justify=col.justify, width=width, no_wrap=True, overflow="ellipsis"
            )
        for row in self.rows:
            table.add_row(*(row[i] for i, _ in shown))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = self.natural_widths()
        whole = sum(natural) + _PER_COLUMN * len(natural) + _EDGES
        return Measurement(min(whole, options.max_width), whole)

    def _blank(self, i: int) -> bool:
        return all(_plain(row[i]) in _BLANK for row in self.rows)


def _one_line(cell: Cell) -> Cell:
    """A value with line breaks and tabs as spaces: a row is one line."""
    if isinstance(cell, str):
        return " ".join(cell.split()) if any(c in cell for c in "\n\r\t\v\f") else cell
    if isinstance(cell, Text) and any(c in cell.plain for c in "\n\r\t\v\f"):
        return Text(" ".join(cell.plain.split()), style=cell.style)
    return cell


def _plain(cell: Cell) -> str | None:
    if isinstance(cell, str):
        return cell
    return cell.plain if isinstance(cell, Text) else None


def _cell_width(cell: Cell, col: Col) -> int:
    plain = _plain(cell)
    return col.width if plain is None else cell_len(plain)


def wide_width(renderable: RenderableType, console: Console) -> int:
    """The width at which `renderable` shows every value whole (`poolctl --wide`)."""
    options = console.options.update_width(1 << 16)
    return max(console.width, Measurement.get(console, options, renderable).maximum)
