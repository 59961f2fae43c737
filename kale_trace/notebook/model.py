"""The notebook model: what the tags say, before anything runs.

Built by `kale_trace.notebook.loader.load_notebook`; read by the dry run, the dataflow merge
and code generation. Plain frozen data so every later stage can trust it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import networkx as nx


class CellRole(str, Enum):
    """What a code cell is for in the pipeline."""

    IMPORTS = "imports"  # prepended to every step
    FUNCTIONS = "functions"  # prepended to every step
    PARAMETERS = "parameters"  # `pipeline-parameters` or papermill's `parameters`
    METRICS = "metrics"  # `pipeline-metrics`
    STEP = "step"  # `step:<name>` / `block:<name>` / untagged continuation
    SKIP = "skip"  # excluded from pipeline and dry run
    INJECTED = "injected-parameters"  # papermill's injected cell: ignored, we inject our own


@dataclass(frozen=True)
class StepSettings:
    """Kale's per-step extras (limit:, image:, label:, annotation:, secret:, cache:)."""

    limits: dict[str, str] = field(default_factory=dict)  # e.g. {"cpu": "2", "memory": "4Gi"}
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # raw `secret:` tag values, in order
    cache: bool | None = None  # None: KFP's default
    retries: int | None = None


@dataclass(frozen=True)
class Cell:
    """One code cell of the notebook that the pipeline cares about."""

    index: int  # position among *all* cells of the notebook (0-based), for error messages
    source: str  # the cell's source text, exactly as in the notebook
    role: CellRole
    step: str | None  # normalised step name for STEP cells, else None
    tags: tuple[str, ...]  # the raw tags, for reports

    @property
    def first_line(self) -> str:
        for line in self.source.splitlines():
            if line.strip():
                return line.strip()
        return ""


@dataclass(frozen=True)
class Step:
    """A pipeline step: the cells tagged with its name, concatenated in notebook order."""

    name: str  # normalised, a valid Python identifier and KFP component name (e.g. data_loading)
    display_name: str  # the name as written in the tag (e.g. data-loading)
    cells: tuple[Cell, ...]
    prev: tuple[str, ...]  # normalised names from `prev:` tags, in order of appearance
    settings: StepSettings = field(default_factory=StepSettings)

    @property
    def source(self) -> str:
        return "\n\n".join(cell.source for cell in self.cells)


@dataclass(frozen=True)
class Notebook:
    """Everything the tags and metadata say about a notebook."""

    path: Path
    cells: tuple[Cell, ...]  # every code cell with a role, in notebook order (skip cells included)
    steps: tuple[Step, ...]  # in order of first appearance
    dag: nx.DiGraph  # nodes: step names; edge u -> v means v runs after u (from prev:)
    metadata: dict[str, Any]  # the `kubeflow_notebook` metadata mapping (may be empty)
    pipeline_name: str  # from metadata `pipeline_name`, else derived from the file name

    @property
    def prologue(self) -> tuple[Cell, ...]:
        """`imports` and `functions` cells, in notebook order."""
        return tuple(c for c in self.cells if c.role in (CellRole.IMPORTS, CellRole.FUNCTIONS))

    @property
    def parameters_cell(self) -> Cell | None:
        found = [c for c in self.cells if c.role is CellRole.PARAMETERS]
        return found[0] if found else None

    @property
    def metrics_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.role is CellRole.METRICS)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)
