"""Result reporting shared by the evaluators: a plain-text table and a JSON writer."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_table", "write_json"]


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 3) -> str:
    """Return ``rows`` as an aligned text table; ``columns`` lists (key, header). Missing / NaN -> "-"."""
    header = [h for _, h in columns]
    body = [[_cell(r.get(k), digits) for k, _ in columns] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    left = [all(isinstance(r.get(k), str) for r in rows) for k, _ in columns]  # text columns align left

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if lt else c.rjust(w) for c, w, lt in zip(cells, widths, left)).rstrip()

    out = [fmt(header), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in body]
    return "\n".join(out)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None  # strict JSON has no NaN
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results`` as indented JSON (NaN -> null); create parent folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(results), indent=2) + "\n")
    return path
