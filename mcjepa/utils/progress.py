"""The one progress display of every command: a tqdm bar on a terminal; in a pipe or a log file,
plain lines instead of a bar redrawn with carriage returns.

:func:`progress_bar` returns a :class:`tqdm.tqdm` either way, so callers use tqdm's API (iterate,
``update``, ``set_postfix``, ``close``). When its output is not a terminal it writes one line
(tqdm's usual text, ending in a newline, no carriage return) each time the count crosses another
:data:`LINE_PERCENT` percent of the total, and at least every :data:`LINE_SECONDS` seconds while
the count moves (the only rule when the total is unknown), plus a final line when it closes. A log
of a run therefore holds at most about 100 / LINE_PERCENT + minutes * 60 / LINE_SECONDS lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm
from tqdm.auto import tqdm as _auto_tqdm
from tqdm.autonotebook import tqdm as _console_or_notebook

__all__ = ["LINE_PERCENT", "LINE_SECONDS", "is_terminal", "line_buffered_stdout", "progress_bar"]

LINE_PERCENT = 10  # a line each time another 10% of the total is done (pipes and log files)
LINE_SECONDS = 30.0  # and at least one every 30 s while the count moves
_LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, {remaining} left, {rate_fmt}"


def is_terminal(stream: IO | None) -> bool:
    """True when ``stream`` is an open interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def line_buffered_stdout() -> None:
    """Make ``sys.stdout`` flush at every newline, so that a command's messages reach a pipe or a
    log file as they are printed rather than when the run ends (a no-op where it cannot)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(line_buffering=True)
        except (ValueError, OSError):  # a detached or unusual stream: leave it
            pass


class _LineProgress(tqdm):
    """tqdm that writes whole lines at a bounded rate instead of redrawing one (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._line_n = 0
        self._line_t = time.monotonic()
        super().__init__(*args, **kwargs)

    def _due(self) -> bool:
        if self.n <= self._line_n:
            return False
        if self.total:
            step = self.total * LINE_PERCENT / 100
            if int(self.n // step) > int(self._line_n // step) or self.n >= self.total:
                return True
        return time.monotonic() - self._line_t >= LINE_SECONDS

    def _write_line(self) -> None:
        self.fp.write(self.__str__() + "\n")
        getattr(self.fp, "flush", lambda: None)()
        self._line_n, self._line_t = self.n, time.monotonic()

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is None and self._due():
            self._write_line()
        return False  # nothing to clear: lines are never redrawn

    def close(self) -> None:
        if not self.disable and self.n != self._line_n:
            self._write_line()
        self.leave = False  # tqdm's closing newline and redraw are not wanted
        super().close()


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    enabled: bool = True,
    file: IO | None = None,
    **kwargs: Any,
) -> tqdm:
    """Return a progress display on ``file`` (default ``sys.stderr``): a tqdm bar on a terminal,
    whole lines otherwise (see the module docstring); nothing at all when ``enabled`` is False.
    ``kwargs`` go to tqdm."""
    file = sys.stderr if file is None else file
    if not enabled:
        return _auto_tqdm(iterable, total=total, desc=desc, unit=unit, disable=True, file=file, **kwargs)
    if is_terminal(file) or _console_or_notebook is not tqdm:  # a terminal, or a notebook's widget
        return _auto_tqdm(iterable, total=total, desc=desc, unit=unit, file=file, dynamic_ncols=True, **kwargs)
    if total is None and iterable is not None:
        total = len(iterable) if hasattr(iterable, "__len__") else None
    if total:
        kwargs.setdefault("bar_format", _LINE_FORMAT)
    return _LineProgress(iterable, total=total, desc=desc, unit=unit, file=file, mininterval=0, **kwargs)
