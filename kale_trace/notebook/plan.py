"""Kale's order: the one run order of the dry run and of every pipeline step.

Kale prepends the `imports` cells, then the `functions` cells, to every step, and binds the
parameters before any step code runs; the metrics are a result of the whole run. So the
dry run runs the prologue first (wherever those cells stand in the notebook), then the
parameters cells, then the steps' cells in notebook order, then the metrics cells in the
step that reports them. A cell in several steps (`block:a;b`) runs where it stands for the
first and again at the start of each other step's next run of cells, as each step's
container runs it.
"""

from __future__ import annotations

from kale_trace.notebook.model import PARAMETERS, PROLOGUE, Cell, CellRole, Segment


def make_plan(cells: list[Cell]) -> tuple[Segment, ...]:
    """The segments of the run, in order; consecutive cells of one owner form one segment."""
    plan: list[tuple[str, list[Cell]]] = []
    imports = [c for c in cells if c.role is CellRole.IMPORTS]
    functions = [c for c in cells if c.role is CellRole.FUNCTIONS]
    if imports or functions:
        plan.append((PROLOGUE, imports + functions))
    parameters = [c for c in cells if c.role is CellRole.PARAMETERS]
    if parameters:
        plan.append((PARAMETERS, parameters))
    pending: dict[str, list[Cell]] = {}
    for cell in (c for c in cells if c.role is CellRole.STEP):
        owner = cell.steps[0]
        _append(plan, owner, [*pending.pop(owner, []), cell])
        for other in cell.steps[1:]:
            pending.setdefault(other, []).append(cell)
    for owner, waiting in pending.items():
        _append(plan, owner, waiting)
    metrics = [c for c in cells if c.role is CellRole.METRICS]
    if metrics:
        _append(plan, metrics_step(cells), metrics)
    return tuple(Segment(owner, tuple(run)) for owner, run in plan)


def metrics_step(cells: list[Cell]) -> str:
    """The step that reports the pipeline metrics: the owner of the last step cell."""
    steps = [c.step for c in cells if c.role is CellRole.STEP and c.step]
    return steps[-1] if steps else PROLOGUE


def _append(plan: list[tuple[str, list[Cell]]], owner: str, cells: list[Cell]) -> None:
    if plan and plan[-1][0] == owner:
        plan[-1][1].extend(cells)
    else:
        plan.append((owner, list(cells)))
