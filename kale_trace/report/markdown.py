"""The Markdown report and diff, for pull requests: GitHub/GitLab tables and a Mermaid DAG.

The Jinja2 environment escapes every `{{ }}` value for Markdown by default (its `finalize`),
the way autoescape works for HTML: only values built by `code`/`mermaid` here pass as-is.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from kale_trace import __version__
from kale_trace.report import text
from kale_trace.report.diff import Diff
from kale_trace.report.mermaid import flowchart
from kale_trace.report.model import Report

_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~])")
_SPACE = re.compile(r"\s+")


class Md(str):
    """Markdown that is safe to place as is."""


def escape(value: Any) -> Md:
    """Any value as inert Markdown text on one line (tables break on newlines)."""
    if isinstance(value, Md):
        return value
    raw = _SPACE.sub(" ", str(value))
    raw = raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Md(_SPECIAL.sub(r"\\\1", raw))


def code(value: Any) -> Md:
    """A code span showing `value` literally: no entity, tag or emphasis is read inside."""
    raw = _SPACE.sub(" ", str(value)).replace("|", "\\|")
    if not raw.strip():
        return Md("–")
    run = max((len(m) for m in re.findall(r"`+", raw)), default=0)
    fence = "`" * (run + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") else ""
    return Md(f"{fence}{pad}{raw}{pad}{fence}")


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("kale_trace", "templates"),
        autoescape=False,  # Markdown, not HTML: `finalize` escapes instead
        finalize=escape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(text.FILTERS, code=code)
    return env


def render_markdown(report: Report) -> str:
    """The type report of one dataflow as GitHub/GitLab-flavoured Markdown."""
    return (
        _environment()
        .get_template("report.md.j2")
        .render(
            r=report,
            version=__version__,
            mermaid=Md(flowchart(report)),
            step_names={s.name: s.display_name for s in report.steps},
        )
    )


def render_diff_markdown(diff: Diff) -> str:
    """What changed between two dataflows, ready to paste into a pull request."""
    added = frozenset((e.producer, e.consumer) for e in diff.added)
    return (
        _environment()
        .get_template("report_diff.md.j2")
        .render(
            d=diff,
            version=__version__,
            mermaid=Md(flowchart(diff.new, added)) if added or diff.steps_added else None,
            step_names={
                **{s.name: s.display_name for s in diff.old.steps},
                **{s.name: s.display_name for s in diff.new.steps},
            },
        )
    )
