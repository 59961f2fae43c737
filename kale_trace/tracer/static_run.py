"""`--no-trace`: the dataflow from static analysis alone, for notebooks that cannot run here.

Every data edge is then `source: "ast"`: passed on when the value exists at run time.
"""

from __future__ import annotations

from typing import Any

from kale_trace.executor.dryrun import DryRun, resolve_parameters, segments_of
from kale_trace.notebook.model import Notebook


def static_run(notebook: Notebook, overrides: dict[str, Any] | None = None) -> DryRun:
    """A DryRun without probes; the parameters are the parameters cells' literals."""
    parameters = resolve_parameters(notebook, overrides or {}, {})
    return DryRun(parameters=parameters, segments=segments_of(notebook), traced=False)
