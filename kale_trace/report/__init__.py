"""The type report (DESIGN §6): a dataflow as HTML or Markdown, and diffs of two dataflows.

Everything is rendered from the `dataflow.json` dict alone, deterministically, so a report
can be rebuilt from a committed dataflow without the notebook.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from kale_trace.report.diff import Diff, diff
from kale_trace.report.diff import to_dict as diff_to_dict
from kale_trace.report.html import render_diff_html, render_html
from kale_trace.report.load import is_notebook, load_report, read_dataflow
from kale_trace.report.markdown import render_diff_markdown, render_markdown
from kale_trace.report.model import Report, from_dict

FORMATS = ("html", "md", "json")


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def render(report: Report, fmt: str) -> str:
    """One report in `fmt` (html, md or json)."""
    if fmt == "html":
        return render_html(report)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "json":
        return _json(dataclasses.asdict(report))
    raise ValueError(f"unknown report format {fmt!r}")


def render_diff(changes: Diff, fmt: str) -> str:
    """A diff in `fmt` (html, md or json)."""
    if fmt == "html":
        return render_diff_html(changes)
    if fmt == "md":
        return render_diff_markdown(changes)
    if fmt == "json":
        return _json(diff_to_dict(changes))
    raise ValueError(f"unknown report format {fmt!r}")


def write_reports(data: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write report.html and report.md for a dataflow dict into `folder` (compile does this)."""
    report = from_dict(data)
    html_path, md_path = folder / "report.html", folder / "report.md"
    html_path.write_text(render_html(report), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return html_path, md_path


__all__ = [
    "FORMATS",
    "Diff",
    "Report",
    "diff",
    "from_dict",
    "is_notebook",
    "load_report",
    "read_dataflow",
    "render",
    "render_diff",
    "write_reports",
]
