"""The HTML report: one self-contained, offline file rendered with autoescaping on.

Every value from the notebook reaches the page through Jinja2's autoescape, and the page
carries a Content-Security-Policy that allows no script and no network at all.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from kale_trace import __version__
from kale_trace.report import text
from kale_trace.report.diff import Diff
from kale_trace.report.layout import LABEL_H, layout
from kale_trace.report.model import Report


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("kale_trace", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(text.FILTERS)
    return env


def _common(report: Report) -> dict[str, Any]:
    return {
        "version": __version__,
        "dag": layout(report),
        "label_h": LABEL_H,
        "pipeline": report.pipeline,
        "step_names": {s.name: s.display_name for s in report.steps},
        "e_status": {},
        "highlight": set(),
    }


def render_html(report: Report) -> str:
    """The type report of one dataflow."""
    context = _common(report)
    context.update(r=report, edge_rows=report.edges)
    return _environment().get_template("report.html.j2").render(context)


def render_diff_html(diff: Diff) -> str:
    """What changed between two dataflows, over the new one's DAG with added edges in green."""
    context = _common(diff.new)
    status = {e.key: "added" for e in diff.added}
    status.update({e.key: "removed" for e in diff.removed})
    context.update(
        d=diff,
        edge_rows=[*diff.added, *diff.removed],
        e_status=status,
        highlight={(e.producer, e.consumer) for e in diff.added},
        step_names={
            **{s.name: s.display_name for s in diff.old.steps},
            **{s.name: s.display_name for s in diff.new.steps},
        },
    )
    return _environment().get_template("report_diff.html.j2").render(context)
