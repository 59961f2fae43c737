"""Merge what the dry run saw with what static analysis can tell into one dataflow.

The dataflow is the single model that code generation, the reports and the runners read:
steps in run order, what each one receives (data, re-imports, re-emitted definitions,
parameters) and from whom, and every warning worth a reviewer's attention.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from kale_trace.cellcode import plain_python_lenient
from kale_trace.errors import KaleTraceError
from kale_trace.executor.dryrun import PARAMETERS, PROLOGUE, DryRun, Segment
from kale_trace.executor.parameters import Parameter
from kale_trace.marshal import choose_marshaller
from kale_trace.notebook.model import Cell, CellRole, Notebook
from kale_trace.tracer.ast_names import NameFacts, analyse

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
    seconds: float = 0.0
    peak_rss_bytes: int = 0


@dataclass
class Dataflow:
    pipeline: str
    notebook: Notebook
    parameters: list[Parameter]
    steps: list[StepFlow]  # in a valid run order (notebook order where the DAG allows)
    warnings: list[dict[str, str]] = field(default_factory=list)
    traced: bool = True
    prologue_modules: set[str] = field(default_factory=set)  # modules the prologue imports

    def step(self, name: str) -> StepFlow:
        return next(s for s in self.steps if s.name == name)

    @property
    def prologue(self) -> list[Cell]:
        return list(self.notebook.prologue)


@dataclass
class _Write:
    segment: int
    step: str
    names: set[str]
    deleted: set[str]
    values: dict[str, dict[str, Any]]
    potential: set[str]  # bound on some path per the AST, but not seen by the dry run


def build_dataflow(notebook: Notebook, run: DryRun) -> Dataflow:
    """Producers, consumers and warnings from the dry run's probes and the cells' AST."""
    facts = [
        analyse("\n".join(plain_python_lenient(c.source) for c in s.cells)) for s in run.segments
    ]
    writes = [_writes_of(i, seg, facts[i], run.traced) for i, seg in enumerate(run.segments)]
    parameter_names = {p.name for p in run.parameters}
    steps = {s.name: StepFlow(s.name, s.display_name, [], list(s.prev), []) for s in notebook.steps}
    dag = nx.DiGraph(notebook.dag)
    warnings: list[dict[str, str]] = []
    metrics_step = notebook.steps[-1].name

    for index, segment in enumerate(run.segments):
        if segment.step in (PROLOGUE, PARAMETERS):
            continue
        consumer = steps[segment.step]
        consumer.cells.extend(segment.cells)
        consumer.seconds += segment.seconds
        consumer.peak_rss_bytes = max(consumer.peak_rss_bytes, segment.peak_rss_bytes)
        consumer.modules |= {m.split(".")[0] for m, _ in facts[index].imports.values()}
        if any(c.role is CellRole.METRICS for c in segment.cells):
            metric_names = set()
            for cell in segment.cells:
                if cell.role is CellRole.METRICS:
                    metric_names |= analyse(cell.source).reads
            consumer.metrics = sorted(metric_names)
        reads = _reads_with_functions(facts[index], writes[:index])
        for name in sorted(reads):
            _resolve(name, index, consumer, writes, parameter_names, notebook)
        _check_shared_memory(segment, consumer, facts[index], notebook)

    # Producers that are not ancestors of their consumer: the data edge now orders them.
    order = [s.name for s in notebook.steps]
    for step in steps.values():
        for flow in step.inputs:
            if flow.producer not in step.after and not nx.has_path(dag, flow.producer, step.name):
                step.after.append(flow.producer)
                dag.add_edge(flow.producer, step.name)
                if step.name != metrics_step or flow.variable not in step.metrics:
                    warnings.append(
                        {
                            "step": step.name,
                            "variable": flow.variable,
                            "message": f"step '{step.name}' reads '{flow.variable}' written "
                            f"by step '{flow.producer}', but no prev: tag orders them; "
                            "kale-trace added the dependency",
                        }
                    )
        step.after = sorted(set(step.after), key=order.index)
    _check_split_steps(run, warnings)
    _check_hidden_state(run, warnings)
    ordered = list(nx.lexicographical_topological_sort(dag, key=order.index))
    for step in steps.values():
        for flow in step.inputs:
            producer = steps[flow.producer]
            if all(o.variable != flow.variable for o in producer.outputs):
                producer.outputs.append(flow)
        step.outputs.sort(key=lambda f: f.variable)
    return Dataflow(
        pipeline=notebook.pipeline_name,
        notebook=notebook,
        parameters=run.parameters,
        steps=[steps[name] for name in ordered],
        warnings=warnings,
        traced=run.traced,
        prologue_modules={
            module.split(".")[0]
            for index, segment in enumerate(run.segments)
            if segment.step == PROLOGUE
            for module, _ in facts[index].imports.values()
        },
    )


def _writes_of(index: int, segment: Segment, facts: NameFacts, traced: bool) -> _Write:
    probe = segment.probe
    if traced:
        names = set()
        for key in ("defined", "rebound", "mutated", "possibly_mutated"):
            names |= set(probe.get(key, []))
        potential = facts.binds - names - set(probe.get("deleted", []))
        return _Write(
            index,
            segment.step,
            names,
            set(probe.get("deleted", [])),
            probe.get("values", {}),
            potential,
        )
    # Without a dry run, every binding the AST can see is a potential write; what kind of
    # object imports and definitions bind is known statically.
    values: dict[str, dict[str, Any]] = {}
    for name, (module, attribute) in facts.imports.items():
        values[name] = (
            {"kind": "module", "module_name": module, "type": "module"}
            if attribute is None
            else {"kind": "importable", "import": {"module": module, "qualname": attribute}}
        )
    for name in facts.definitions:
        values[name] = {"kind": "function", "type": "function"}
    static = set(values)
    return _Write(index, segment.step, static, set(), values, set(facts.binds) - static)


def _reads_with_functions(facts: NameFacts, earlier: list[_Write]) -> set[str]:
    """The step's reads plus the globals read by notebook functions it may call."""
    reads = set(facts.reads) | facts.deferred_reads
    pending = list(reads)
    while pending:
        name = pending.pop()
        info = _latest_info(name, earlier)
        if info and info.get("kind") in ("function", "class"):
            for extra in info.get("co_names", []):
                if extra not in reads:
                    reads.add(extra)
                    pending.append(extra)
    return reads


def _latest_info(name: str, earlier: list[_Write]) -> dict[str, Any] | None:
    for write in reversed(earlier):
        if name in write.values:
            return write.values[name]
    return None


def _resolve(
    name: str,
    index: int,
    consumer: StepFlow,
    writes: list[_Write],
    parameter_names: set[str],
    notebook: Notebook,
) -> None:
    """Find who provides `name` to the consumer segment, and record how it travels."""
    traced_writer: _Write | None = None
    potential: list[_Write] = []
    for write in reversed(writes[:index]):
        if name in write.deleted:
            break  # a deleted name is nobody's output; a read here is on a path not taken
        if name in write.names:
            traced_writer = write
            break
        if name in write.potential:
            potential.append(write)
    if traced_writer is not None and traced_writer.step not in (consumer.name, PROLOGUE):
        if traced_writer.step == PARAMETERS:
            if name in parameter_names and name not in consumer.parameters:
                consumer.parameters.append(name)
        else:
            _add_input(name, traced_writer, consumer, "trace", notebook)
    for write in reversed(potential):
        if write.step not in (consumer.name, PROLOGUE, PARAMETERS):
            _add_input(name, write, consumer, "ast", notebook)


def _add_input(
    name: str, write: _Write, consumer: StepFlow, source: str, notebook: Notebook
) -> None:
    info = write.values.get(name, UNKNOWN_INFO) if source == "trace" else UNKNOWN_INFO
    kind = info.get("kind", "data")
    if kind == "module":
        module = info["module_name"]
        consumer.imports[name] = (
            f"import {module}" if module == name else f"import {module} as {name}"
        )
        consumer.modules.add(module.split(".")[0])
        return
    if kind == "importable":
        where = info["import"]
        consumer.imports[name] = _from_import(name, where["module"], where["qualname"])
        consumer.modules.add(where["module"].split(".")[0])
        return
    if kind in ("function", "class"):
        definition = _definition_source(name, write, notebook)
        if definition is not None:
            consumer.definitions[name] = definition
            return
    if kind == "unmovable":
        raise KaleTraceError(
            f"'{name}' is a {info.get('type')}, which cannot be moved between pipeline steps: "
            f"step '{write.step}' creates it and step '{consumer.name}' uses it",
            notebook=str(notebook.path),
            step=consumer.name,
            fix=f"merge steps '{write.step}' and '{consumer.name}', or re-create '{name}' "
            f"in step '{consumer.name}' (open the file, connection or generator there)",
        )
    if any(f.variable == name and f.producer == write.step for f in consumer.inputs):
        return
    marshaller = choose_marshaller(info).name
    consumer.inputs.append(Flow(name, write.step, consumer.name, info, marshaller, source))


def _from_import(name: str, module: str, qualname: str) -> str:
    if "." not in qualname:
        suffix = "" if qualname == name else f" as {name}"
        return f"from {module} import {qualname}{suffix}"
    head, rest = qualname.split(".", 1)
    return f"from {module} import {head} as _kale_import\n{name} = _kale_import.{rest}"


def _definition_source(name: str, write: _Write, notebook: Notebook) -> str | None:
    """The statement that defined a notebook function/class/lambda, to re-run in consumers."""
    step = write.step
    cells = (
        [c for c in notebook.cells if c.step == step] if step not in (PROLOGUE, PARAMETERS) else []
    )
    found: str | None = None
    for cell in cells:
        code = plain_python_lenient(cell.source)
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        lines = code.splitlines()
        for stmt in tree.body:
            binds = (
                {stmt.name}
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                else {t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)}
            )
            if name in binds:
                start = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
                found = "\n".join(lines[start - 1 : stmt.end_lineno])
    return found


def _check_shared_memory(
    segment: Segment, consumer: StepFlow, facts: NameFacts, notebook: Notebook
) -> None:
    """A write through an alias or view whose partner came from another step.

    Each input arrives as its own copy, so memory shared in the notebook is not shared in
    the pipeline: writing one name would silently leave the other unchanged. A view made
    inside the step from one received array is fine.
    """
    received = {f.variable for f in consumer.inputs}
    probe = segment.probe
    mutated = set(probe.get("mutated", [])) | set(probe.get("possibly_mutated", []))
    available = received | facts.binds | set(probe.get("defined", []))
    for group in probe.get("aliases", []):
        members = set(group)
        crossing = received & members
        if not (mutated & members):
            continue
        unreachable = (mutated & members) - available
        if len(crossing) >= 2 or unreachable:
            names = ", ".join(f"'{n}'" for n in group)
            raise KaleTraceError(
                f"{names} share memory (aliases or numpy views), and step '{consumer.name}' "
                f"writes through them after receiving {', '.join(sorted(crossing))} from "
                "another step; separate steps cannot share memory, so the pipeline would "
                "compute something else than the notebook",
                notebook=str(notebook.path),
                step=consumer.name,
                fix=f"create the alias or view in step '{consumer.name}' itself (e.g. "
                "`view = arr[:3]` there), or merge the steps",
            )


_RNG_FIX = "seed inside this step, or use an explicit generator (np.random.default_rng(seed))"


def _check_hidden_state(run: DryRun, warnings: list[dict[str, str]]) -> None:
    """Global state a step inherits from earlier steps in the notebook but not in a pipeline."""
    before: dict[str, Any] = {}
    touched: dict[str, str] = {}  # hidden key -> last step (or prologue) that changed it
    for segment in run.segments:
        hidden = segment.probe.get("hidden", {})
        for key, value in hidden.items():
            if key in before and before[key] != value:
                previous = touched.get(key)
                step = segment.step
                if key in ("random", "numpy.random") and previous and previous != step:
                    if step not in (PROLOGUE, PARAMETERS):
                        warnings.append(
                            {
                                "step": step,
                                "variable": key,
                                "message": f"step '{step}' draws from the global {key} state that "
                                f"'{previous}' left behind; in the pipeline it starts from a fresh "
                                f"state, so its numbers differ from the notebook's ({_RNG_FIX})",
                            }
                        )
                elif key in ("cwd", "environ") and step not in (PROLOGUE, PARAMETERS):
                    warnings.append(
                        {
                            "step": step,
                            "variable": key,
                            "message": f"step '{step}' changes the process's "
                            f"{'working directory' if key == 'cwd' else 'environment variables'}; "
                            "later steps run in fresh processes and will not see the change",
                        }
                    )
                touched[key] = step
            before[key] = value


def _check_split_steps(run: DryRun, warnings: list[dict[str, str]]) -> None:
    seen: list[str] = []
    for segment in run.segments:
        if segment.step in (PROLOGUE, PARAMETERS):
            continue
        if segment.step in seen and seen[-1] != segment.step:
            warnings.append(
                {
                    "step": segment.step,
                    "variable": "",
                    "message": f"the cells of step '{segment.step}' are not contiguous in the "
                    "notebook; the pipeline runs them together, after the cells in between",
                }
            )
        seen.append(segment.step)
