"""The step DAG as a Mermaid flowchart, which GitHub and GitLab draw inside Markdown.

Node ids are generated (`s0`, `s1`, …) so no name can collide with Mermaid keywords, and
every label is quoted with all but a few plain characters written as `#NNN;` entity codes,
so nothing from the notebook can end a label or the code block.
"""

from __future__ import annotations

import re

from kale_trace.report.model import Report

_PLAIN = re.compile(r"[A-Za-z0-9 _.,:-]")


def label(text: str) -> str:
    """A quoted Mermaid label showing `text` literally."""
    body = "".join(ch if _PLAIN.fullmatch(ch) else f"#{ord(ch)};" for ch in text)
    return f'"{body}"'


def _edge_label(variables: tuple[str, ...]) -> str:
    if len(variables) <= 4:
        return ", ".join(variables)
    return f"{', '.join(variables[:3])} +{len(variables) - 3}"


def flowchart(report: Report, added: frozenset[tuple[str, str]] = frozenset()) -> str:
    """`flowchart TD` source; warned steps are amber, links in `added` green."""
    ids = {s.name: f"s{i}" for i, s in enumerate(report.steps)}
    lines = ["flowchart TD"]
    for step in report.steps:
        lines.append(f"    {ids[step.name]}[{label(step.display_name)}]")
    styles = []
    for index, (producer, consumer, variables) in enumerate(report.links()):
        if variables:
            arrow = f"-->|{label(_edge_label(variables))}|"
        else:
            arrow = "-.->"
        lines.append(f"    {ids[producer]} {arrow} {ids[consumer]}")
        if (producer, consumer) in added:
            styles.append(index)
    warned = sorted({w.step for w in report.warnings if w.step in ids}, key=list(ids).index)
    if warned:
        lines.append("    classDef warn fill:#fff8c5,stroke:#d4a72c,stroke-width:2px,color:#1f2328")
        lines.append(f"    class {','.join(ids[s] for s in warned)} warn")
    if styles:
        lines.append(f"    linkStyle {','.join(map(str, styles))} stroke:#1a7f37,stroke-width:3px")
    return "\n".join(lines)
