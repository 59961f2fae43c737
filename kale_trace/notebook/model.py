"""The notebook model: what the tags say, before anything runs.

Built by `kale_trace.notebook.loader.load_notebook`; read by the dry run, the dataflow merge
and code generation. Plain frozen data so every later stage can trust it.

Kale's order is the pipeline's order, and so the dry run's (`Notebook.plan`): the `imports`
cells, then the `functions` cells, then the parameters cells, then every step's cells in
notebook order, with the `pipeline-metrics` cells last, in the step that reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import networkx as nx

PROLOGUE = "(imports and functions)"  # owner of the prologue segment of the plan
PARAMETERS = "(parameters)"  # owner of the parameters segment of the plan


class CellRole(str, Enum):
    """What a code cell is for in the pipeline."""

    IMPORTS = "imports"  # prepended to every step
    FUNCTIONS = "functions"  # prepended to every step, after the imports
    PARAMETERS = "parameters"  # `pipeline-parameters` or papermill's `parameters`
    METRICS = "metrics"  # `pipeline-metrics`: runs last, in the metrics step
    STEP = "step"  # `step:<name>` / `block:<name>` / untagged continuation


@dataclass(frozen=True)
class SecretRef:
    """One `secret:` tag: a Secret key as an environment variable, or the Secret as files."""

    name: str
    key: str | None = None  # with env: secret:<name>:<key>:<ENV_VAR> (Kale's syntax)
    env: str | None = None
    mount_path: str | None = None  # secret:<name>:<absolute mount path> (volume form)


@dataclass(frozen=True)
class Volume:
    """A volume from `kubeflow_notebook.volumes`, mounted on every step."""

    kind: str  # "pvc": an existing claim; "new_pvc": a claim the pipeline creates
    name: str
    mount_path: str
    size: str | None = None  # new_pvc only, e.g. "5Gi"
    access_mode: str = "ReadWriteOnce"
    storage_class: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()  # new_pvc only: the claim's annotations
    env_var: str | None = None  # Kale 2's expose_as_env_var: KALE_VOLUME_<NAME> = mount path


@dataclass(frozen=True)
class StepSettings:
    """Kale's per-step extras (limit:, image:, label:, annotation:, secret:, cache:, report:)."""

    limits: dict[str, str] = field(default_factory=dict)  # e.g. {"cpu": "2", "memory": "4Gi"}
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: tuple[SecretRef, ...] = ()
    cache: bool | None = None  # None: KFP's default
    retries: int | None = None
    report: bool | None = None  # Kale 2.x `report:`; None: the default


@dataclass(frozen=True)
class PipelineConfig:
    """The `kubeflow_notebook` metadata, checked: what shapes the whole pipeline."""

    name: str  # a valid KFP pipeline name
    description: str | None = None
    experiment: str | None = None
    base_image: str | None = None  # Kale's docker_image, or base_image
    volumes: tuple[Volume, ...] = ()
    enable_caching: bool | None = None
    timeout: int | None = None  # seconds, set on every step (KFP v2 has no run deadline)
    security_context: tuple[tuple[str, int | bool], ...] = ()  # run_as_user, run_as_group, ...
    step_defaults: StepSettings = field(default_factory=StepSettings)


@dataclass(frozen=True)
class Cell:
    """One code cell of the notebook that the pipeline runs."""

    index: int  # position among *all* cells of the notebook (0-based), for every message
    source: str  # the cell's source text, exactly as in the notebook
    role: CellRole
    steps: tuple[str, ...]  # STEP cells: normalised step names (Kale's `block:a;b`), else ()
    tags: tuple[str, ...]  # the raw tags, for reports
    # The notebook a `notebook:` cell brought the cell from (as messages show its path);
    # None for the compiled notebook's own cells. `index` is then its index there.
    origin: str | None = None

    @property
    def step(self) -> str | None:
        """The step that runs this cell where it stands in the notebook (the first named)."""
        return self.steps[0] if self.steps else None

    @property
    def first_line(self) -> str:
        for line in self.source.splitlines():
            if line.strip():
                return line.strip()
        return ""


@dataclass(frozen=True)
class Step:
    """A pipeline step: its cells in the order the pipeline runs them."""

    name: str  # normalised, a valid Python identifier and KFP component name (e.g. data_loading)
    display_name: str  # the name as written in the tag (e.g. data-loading)
    cells: tuple[Cell, ...]
    prev: tuple[str, ...]  # normalised names from `prev:` tags, in order of appearance
    settings: StepSettings = field(default_factory=StepSettings)

    @property
    def source(self) -> str:
        return "\n\n".join(cell.source for cell in self.cells)


@dataclass(frozen=True)
class ParameterSpec:
    """A pipeline parameter as the parameters cell writes it: a name bound to a literal."""

    name: str
    default: Any  # the literal's value (bool, int, float, str, list, dict or None)
    cell: int  # index of the parameters cell that binds it


@dataclass(frozen=True)
class Note:
    """Something the user should know about how the notebook was read (never silent)."""

    message: str
    cell: int | None = None
    warning: bool = False  # a warning changes what runs or may surprise; a note does not


@dataclass(frozen=True)
class Segment:
    """Consecutive cells of the plan run by one owner: a step, PROLOGUE or PARAMETERS."""

    owner: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Notebook:
    """Everything the tags and metadata say about a notebook."""

    path: Path
    cells: tuple[Cell, ...]  # every code cell that runs, in notebook order
    steps: tuple[Step, ...]  # in order of first appearance
    dag: nx.DiGraph  # nodes: step names; edge u -> v means v runs after u (from prev:)
    metadata: dict[str, Any]  # the raw `kubeflow_notebook` metadata mapping (may be empty)
    config: PipelineConfig
    plan: tuple[Segment, ...] = ()  # the run order of the dry run and of the pipeline
    parameters: tuple[ParameterSpec, ...] = ()
    parameters_code: bool = False  # the parameters cells hold more than literal assignments
    notes: tuple[Note, ...] = ()

    @property
    def pipeline_name(self) -> str:
        return self.config.name

    @property
    def imports(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.role is CellRole.IMPORTS)

    @property
    def prologue(self) -> tuple[Cell, ...]:
        """`imports` then `functions` cells, as Kale prepends them to every step."""
        functions = tuple(c for c in self.cells if c.role is CellRole.FUNCTIONS)
        return self.imports + functions

    @property
    def parameter_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.role is CellRole.PARAMETERS)

    @property
    def metrics_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.role is CellRole.METRICS)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)
