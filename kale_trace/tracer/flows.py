"""The dataflow model: what crosses each step, from whom, and how (DESIGN §6).

Code generation, the reports and the runners read only this; `tracer.dataflow` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kale_trace.executor.parameters import Parameter
from kale_trace.notebook.model import Cell, Notebook

UNKNOWN_INFO: dict[str, Any] = {"type": "unknown", "mro": [], "kind": "data"}


@dataclass
class Flow:
    """One value crossing from a producer step to a consumer step."""

    variable: str
    producer: str
    consumer: str
    info: dict[str, Any]  # what the probe saw of the value (type, size, shape, ...)
    marshaller: str
    source: str  # "trace": the dry run saw it; "ast": only static analysis says it may exist
    alias_of: str | None = None  # the same object as this input: re-bound, not passed again
    group: tuple[str, ...] = ()  # names bound to this very object when the producer ended

    @property
    def optional(self) -> bool:
        return self.source == "ast"


@dataclass
class StepFlow:
    """Everything code generation needs to know about one step."""

    name: str
    display_name: str
    cells: list[Cell]
    after: list[str]  # steps it must run after (prev: tags and data producers)
    parameters: list[str]  # pipeline parameters it reads
    inputs: list[Flow] = field(default_factory=list)
    outputs: list[Flow] = field(default_factory=list)  # one per (variable) that others read
    imports: dict[str, str] = field(default_factory=dict)  # name -> import statement to re-emit
    definitions: dict[str, str] = field(default_factory=dict)  # name -> def/class source
    metrics: list[str] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)  # top-level modules the step's code imports
    # module -> {setting: value} in effect when the step started in the notebook
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_bytes: int = 0


@dataclass
class Dataflow:
    pipeline: str
    notebook: Notebook
    parameters: list[Parameter]
    steps: list[StepFlow]  # in a valid run order (notebook order where the DAG allows)
    warnings: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)  # step-level, not warnings
    traced: bool = True
    prologue_modules: set[str] = field(default_factory=set)  # modules the prologue imports

    def step(self, name: str) -> StepFlow:
        return next(s for s in self.steps if s.name == name)

    @property
    def prologue(self) -> list[Cell]:
        return list(self.notebook.prologue)
