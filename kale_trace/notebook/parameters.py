"""The parameters cells, read once: the names they bind to literals are the parameters.

As papermill does, a parameters cell may hold any code: its literal assignments
(`rows = 100`, `lr: float = 1e-3`, `cols = ["a", "b"]`, `seed = None`) are the pipeline's
parameters, typed by those literals, and the whole cell still runs where Kale's order puts
it, with the pipeline's values bound right after it (papermill's injected cell). A literal
KFP cannot carry (a tuple, a set, bytes) stays plain code, with a note.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from kale_trace.cellcode import python_source
from kale_trace.errors import KaleTraceError
from kale_trace.notebook.model import Cell, CellRole, Note, ParameterSpec

PARAMETER_TYPES = (bool, int, float, str, list, dict, type(None))


@dataclass
class ParametersReading:
    specs: tuple[ParameterSpec, ...] = ()
    has_code: bool = False  # more than literal assignments: the cells run in every step
    notes: list[Note] = field(default_factory=list)


def read_parameters(cells: list[Cell], where: str) -> ParametersReading:
    """Parameters from every parameters cell (Kale concatenates them), in order."""
    reading = ParametersReading()
    found: dict[str, ParameterSpec] = {}
    code_bound: set[str] = set()
    for cell in (c for c in cells if c.role is CellRole.PARAMETERS):
        tree = _parse(cell, where)
        for stmt in tree.body:
            literal = _literal_binding(stmt)
            if literal is None:
                reading.has_code = True
                code_bound |= _bound_names(stmt)
                continue
            names, value = literal
            if not isinstance(value, PARAMETER_TYPES) or not _json_like(value):
                reading.has_code = True
                code_bound |= set(names)
                reading.notes.append(_not_a_parameter(names, value, cell))
                continue
            for name in names:
                found[name] = ParameterSpec(name, value, cell.index)
    for name in sorted(code_bound & set(found)):
        del found[name]  # also bound by code: the code decides its value, papermill-style
    reading.specs = tuple(found.values())
    return reading


def _parse(cell: Cell, where: str) -> ast.Module:
    try:
        return ast.parse(python_source(cell.source))
    except SyntaxError as exc:
        raise KaleTraceError(
            f"the parameters cell is not valid Python: {exc.msg} (line {exc.lineno})",
            notebook=where,
            cell=cell.index,
            cell_source=cell.source,
            fix="write plain assignments such as `rows = 100`",
        ) from exc


def _literal_binding(stmt: ast.stmt) -> tuple[list[str], Any] | None:
    """(names, value) for `a = b = <literal>` or `a: T = <literal>`; else None."""
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        targets, value = [t.id for t in stmt.targets], stmt.value  # type: ignore[attr-defined]
    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
        targets, value = [stmt.target.id], stmt.value
    else:
        return None
    try:
        return targets, ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _json_like(value: Any, depth: int = 0) -> bool:
    """Lists and dicts of JSON values only: what a pipeline parameter can hold exactly."""
    if depth > 100:
        return False
    if isinstance(value, list):
        return all(_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(type(k) is str and _json_like(v, depth + 1) for k, v in value.items())
    return isinstance(value, PARAMETER_TYPES)


def _bound_names(stmt: ast.stmt) -> set[str]:
    names = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _not_a_parameter(names: list[str], value: Any, cell: Cell) -> Note:
    kind = type(value).__name__
    listed = ", ".join(f"'{n}'" for n in names)
    return Note(
        f"{listed} in the parameters cell is a {kind}, which a pipeline parameter cannot "
        "hold: it runs as code and keeps the notebook's value (use a list to make it a "
        "parameter)",
        cell=cell.index,
    )
