"""Plain-text renderings shared by every format, so HTML, Markdown and diffs agree.

These return ordinary strings; escaping is the job of the template that shows them.
"""

from __future__ import annotations

import json
from typing import Any

from kale_trace.report.model import Edge

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: int | None) -> str:
    """Bytes in binary units with three significant figures: 141244 -> '138 KiB'."""
    if n is None:
        return "–"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if abs(value) >= 1 else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def dims(shape: tuple[int, ...] | None) -> str:
    """'569 × 31'; 'scalar' for (), '–' when unknown."""
    if shape is None:
        return "–"
    return " × ".join(str(n) for n in shape) if shape else "scalar"


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def value(v: Any) -> str:
    """A parameter value as JSON, so strings show their quotes and lists their brackets."""
    return json.dumps(v, ensure_ascii=False, default=str)


def shape(edge: Edge) -> str:
    """Shape and dtype in one cell: '569 × 31', '426 × 8 float64', or '' when unknown."""
    parts = []
    if edge.shape is not None:
        parts.append(dims(edge.shape))
    if edge.dtype:
        parts.append(edge.dtype)
    return " ".join(parts)


def columns(edge: Edge, limit: int | None = None) -> list[str]:
    """'name: dtype' per column; with `limit`, the first ones and a '+N more' line."""
    if not edge.columns:
        return []
    lines = [f"{name}: {dtype}" if dtype else name for name, dtype in edge.columns]
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"+{len(lines) - limit} more"]
    return lines


# Jinja2 filters every report format shares.
def sizes(edge: Any) -> str:
    """What a value weighs: the file its step writes, and in memory where that is known."""
    parts = []
    if edge.saved_bytes is not None:
        parts.append(f"{size(edge.saved_bytes)} saved")
    if edge.size_bytes is not None:
        parts.append(f"{size(edge.size_bytes)} in memory")
    return ", ".join(parts) or "–"


FILTERS = {
    "sizes": sizes,
    "size": size,
    "seconds": seconds,
    "value": value,
    "shape": shape,
    "columns": columns,
}
