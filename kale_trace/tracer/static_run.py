"""`--no-trace`: the dataflow from static analysis alone, for notebooks that cannot run here.

Every data edge is then `source: "ast"`: passed on when the value exists at run time.
"""

from __future__ import annotations

import ast
from typing import Any

from kale_trace.errors import KaleTraceError
from kale_trace.executor.dryrun import DryRun, resolve_parameters, segments_of
from kale_trace.notebook.model import Notebook


def static_run(notebook: Notebook, overrides: dict[str, Any] | None = None) -> DryRun:
    """A DryRun without probes; parameter defaults must be literals."""
    defaults: dict[str, Any] = {}
    cell = notebook.parameters_cell
    if cell is not None:
        for stmt in ast.parse(cell.source).body:
            target = (
                stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
            )
            value = getattr(stmt, "value", None)
            if not isinstance(target, ast.Name) or value is None:
                continue
            try:
                defaults[target.id] = ast.literal_eval(value)
            except ValueError as exc:
                raise KaleTraceError(
                    f"parameter '{target.id}' is not a literal, so --no-trace cannot know it",
                    notebook=str(notebook.path),
                    cell=cell.index,
                    cell_source=cell.source,
                    fix="write a literal default, or compile without --no-trace",
                ) from exc
    parameters = resolve_parameters(notebook, defaults, overrides or {}, {})
    return DryRun(parameters=parameters, segments=segments_of(notebook), traced=False)
