"""A layered drawing of the step DAG: positions only, no markup (svg.py draws it).

Layers are networkx's topological generations, top to bottom, so a phone scrolls down a
pipeline rather than sideways; inside a layer, steps sit under the mean position of their
producers (ties in notebook order), which keeps the usual fan-out/fan-in shapes uncrossed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import networkx as nx

from kale_trace.report import text
from kale_trace.report.model import Report

NODE_H = 46
GAP_X = 40
GAP_Y = 64
MARGIN = 16
_CHAR = 8.2  # px per character of the 14px label font, erring wide
_SMALL_CHAR = 6.6  # the 11px second line
LABEL_H = 18


@dataclass(frozen=True)
class Node:
    name: str
    label: str
    detail: str
    warnings: int
    x: float
    y: float
    w: float
    h: float = NODE_H

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass(frozen=True)
class Link:
    producer: str
    consumer: str
    variables: tuple[str, ...]
    path: str
    label: str
    lx: float  # label centre
    ly: float
    lw: float


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]


def _label(variables: tuple[str, ...]) -> str:
    if len(variables) <= 3:
        return ", ".join(variables)
    return f"{', '.join(variables[:2])} +{len(variables) - 2}"


def _bezier(p: tuple[float, float, float, float], k: float, t: float) -> tuple[float, float]:
    x1, y1, x2, y2 = p
    points = ((x1, y1), (x1, y1 + k), (x2, y2 - k), (x2, y2))
    u = 1 - t
    weights = (u**3, 3 * u * u * t, 3 * u * t * t, t**3)
    return (
        sum(w * q[0] for w, q in zip(weights, points, strict=True)),
        sum(w * q[1] for w, q in zip(weights, points, strict=True)),
    )


def _at_height(p: tuple[float, float, float, float], k: float, y: float) -> tuple[float, float]:
    """The curve's point at height y (y grows monotonically along these curves)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if _bezier(p, k, mid)[1] < y:
            lo = mid
        else:
            hi = mid
    return _bezier(p, k, (lo + hi) / 2)


def _detour(a: Node, b: Node, nodes: Iterable[Node]) -> float | None:
    """Where a link skipping layers must pass to miss the steps in between (None: nowhere)."""
    blocking = []
    for node in nodes:
        if a.y < node.y < b.y:
            share = (node.y + node.h / 2 - a.y - a.h) / (b.y - a.y - a.h)
            x = a.cx + (b.cx - a.cx) * share  # the straight line at that step's height
            if node.x - 8 <= x <= node.x + node.w + 8:
                blocking.append(node)
    if not blocking:
        return None
    return max(node.x + node.w for node in blocking) + GAP_X / 2


def _path(x1: float, y1: float, x2: float, y2: float, k: float, route: float | None) -> str:
    """SVG path data: one S-curve, or down a detour at x=route between two S-curves."""
    if route is None:
        return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + k:.1f} {x2:.1f},{y2 - k:.1f} {x2:.1f},{y2:.1f}"
    top, bottom, q = y1 + GAP_Y / 2, y2 - GAP_Y / 2, GAP_Y / 4
    return (
        f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + q:.1f} {route:.1f},{top - q:.1f} {route:.1f},"
        f"{top:.1f} L{route:.1f},{bottom:.1f} C{route:.1f},{bottom + q:.1f} {x2:.1f},"
        f"{y2 - q:.1f} {x2:.1f},{y2:.1f}"
    )


@dataclass
class _Placed:
    """A link while labels are being placed; `lx` moves, the rest is fixed."""

    producer: str
    consumer: str
    variables: tuple[str, ...]
    curve: tuple[float, float, float, float]
    k: float
    route: float | None  # x of a detour around steps in between, or None: a direct curve
    label: str
    lx: float
    ly: float
    lw: float


def _spread(links: list[_Placed]) -> None:
    """Push apart labels that share a gap so none covers another; keep each row's centre."""
    rows: dict[float, list[_Placed]] = {}
    for link in links:
        if link.label:
            rows.setdefault(round(link.ly), []).append(link)
    for row in rows.values():
        row.sort(key=lambda link: link.lx)
        before = sum(link.lx for link in row)
        for previous, link in zip(row, row[1:], strict=False):
            link.lx = max(link.lx, previous.lx + previous.lw / 2 + 6 + link.lw / 2)
        offset = (before - sum(link.lx for link in row)) / len(row)
        for link in row:
            link.lx += offset


def layout(report: Report) -> Layout:
    """Place every step and every DAG edge; deterministic for a given report."""
    order = {s.name: i for i, s in enumerate(report.steps)}
    dag = nx.DiGraph()
    dag.add_nodes_from(order)
    links = report.links()
    dag.add_edges_from((a, b) for a, b, _ in links)
    warned: dict[str, int] = {}
    for warning in report.warnings:
        warned[warning.step] = warned.get(warning.step, 0) + 1

    slot: dict[str, float] = {}  # position inside the layer, for ordering the next layers
    layers: list[list[str]] = []
    for generation in nx.topological_generations(dag):

        def key(name: str) -> tuple[float, int]:
            above = [slot[p] for p in dag.predecessors(name)]
            return (sum(above) / len(above) if above else -1.0, order[name])

        layer = sorted(generation, key=key)
        for i, name in enumerate(layer):
            slot[name] = i - (len(layer) - 1) / 2
        layers.append(layer)

    widths: dict[str, float] = {}
    details: dict[str, str] = {}
    for step in report.steps:
        bits = [text.seconds(step.seconds)] if step.seconds is not None else []
        if step.peak_rss_bytes is not None:
            bits.append(text.size(step.peak_rss_bytes))
        details[step.name] = " · ".join(bits)
        widths[step.name] = max(
            96.0,
            len(step.display_name) * _CHAR + 24 + (28 if step.name in warned else 0),
            len(details[step.name]) * _SMALL_CHAR + 20,
        )
    row_widths = [sum(widths[n] for n in layer) + GAP_X * (len(layer) - 1) for layer in layers]
    width = max(row_widths, default=0) + 2 * MARGIN
    nodes: dict[str, Node] = {}
    for depth, (layer, row_width) in enumerate(zip(layers, row_widths, strict=True)):
        x = (width - row_width) / 2
        y = MARGIN + depth * (NODE_H + GAP_Y)
        for name in layer:
            step = report.step(name)
            nodes[name] = Node(
                name, step.display_name, details[name], warned.get(name, 0), x, y, widths[name]
            )
            x += widths[name] + GAP_X
    height = MARGIN * 2 + len(layers) * NODE_H + max(len(layers) - 1, 0) * GAP_Y

    placed = []
    for producer, consumer, variables in links:
        a, b = nodes[producer], nodes[consumer]
        curve = (a.cx, a.y + a.h, b.cx, b.y)
        k = min(GAP_Y * 0.8, (b.y - a.y - a.h) / 2)
        route = _detour(a, b, nodes.values())
        label = _label(variables)
        if route is None:  # label in the gap under the producer
            lx, ly = _at_height(curve, k, a.y + a.h + GAP_Y / 2)
        else:
            lx, ly = route, a.y + a.h + GAP_Y / 2
        lw = len(label) * _SMALL_CHAR + 10 if label else 0.0
        placed.append(_Placed(producer, consumer, variables, curve, k, route, label, lx, ly, lw))
    _spread(placed)
    xs = [x for link in placed for x in (link.lx - link.lw / 2, link.lx + link.lw / 2)]
    xs += [link.route for link in placed if link.route is not None]
    left, right = min([MARGIN, *xs]), max([width - MARGIN, *xs])
    shift = MARGIN - left  # widen the canvas if a label or detour went past its edge
    width = right + shift + MARGIN
    nodes = {name: replace(node, x=node.x + shift) for name, node in nodes.items()}
    drawn = []
    for link in placed:
        x1, y1, x2, y2 = link.curve
        drawn.append(
            Link(
                link.producer,
                link.consumer,
                link.variables,
                _path(x1 + shift, y1, x2 + shift, y2, link.k, link.route and link.route + shift),
                link.label,
                link.lx + shift,
                link.ly,
                link.lw,
            )  # fmt: skip
        )
    return Layout(width, height, tuple(nodes[s.name] for s in report.steps), tuple(drawn))
