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
from kale_trace.marshal import FILE, RNG_STATE, choose_marshaller
from kale_trace.notebook.model import CellRole, Notebook
from kale_trace.notebook.plan import metrics_step as plan_metrics_step
from kale_trace.tracer.ast_names import NameFacts, analyse
from kale_trace.tracer.file_flows import file_flows
from kale_trace.tracer.flows import UNKNOWN_INFO, Dataflow, Flow, StepFlow
from kale_trace.tracer.hidden_state import (
    carry_settings,
    check_process_state,
    check_pyplot,
    check_split_steps,
    rng_flows,
)

__all__ = ["UNKNOWN_INFO", "Dataflow", "Flow", "StepFlow", "build_dataflow"]


@dataclass
class _Write:
    segment: int
    step: str
    names: set[str]
    deleted: set[str]
    values: dict[str, dict[str, Any]]
    potential: set[str]  # bound on some path per the AST, but not seen by the dry run
    same_object: list[list[str]] = field(default_factory=list)  # alias groups at the end
    indirect: set[str] = field(default_factory=set)  # changed without being named
    mutated: set[str] = field(default_factory=set)  # the same object, changed in place


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
    notes: list[dict[str, str]] = []
    metrics_step = plan_metrics_step(list(notebook.cells))

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
        reads |= set(segment.probe.get("reads", []))  # names looked up dynamically
        for name in sorted(reads):
            _resolve(name, index, consumer, writes, parameter_names, notebook, warnings)
        _complete_alias_groups(segment, consumer)
        _mark_aliases(consumer)
        _check_shared_memory(segment, consumer, facts[index], notebook)

    file_flows(run, steps, warnings)
    if run.traced:
        rng_flows(run, steps, warnings)
        carry_settings(run, steps)
    for write in writes:
        for name in sorted(write.indirect):
            if write.step not in (PROLOGUE, PARAMETERS):
                warnings.append(
                    {
                        "step": write.step,
                        "variable": name,
                        "message": f"step '{write.step}' changes '{name}' without naming it (it "
                        "writes an object that this value holds a reference to); in the pipeline "
                        f"later steps get '{name}' as it was before, so build it in or after "
                        f"step '{write.step}', or merge the steps",
                    }
                )
    for step in steps.values():
        for flow in step.inputs:
            if flow.info.get("closure"):
                warnings.append(
                    {
                        "step": step.name,
                        "variable": flow.variable,
                        "message": f"'{flow.variable}' is a closure made in step "
                        f"'{flow.producer}'; it travels by value with cloudpickle, with the "
                        "variables it captured (re-create it in the step that uses it to "
                        "avoid this)",
                    }
                )

    # Producers that are not ancestors of their consumer: the data edge now orders them.
    order = [s.name for s in notebook.steps]
    for step in steps.values():
        for flow in step.inputs:
            if flow.producer not in step.after and not nx.has_path(dag, flow.producer, step.name):
                if nx.has_path(dag, step.name, flow.producer):
                    raise _cycle_error(notebook, dag, steps, flow)
                step.after.append(flow.producer)
                dag.add_edge(flow.producer, step.name)
                if flow.marshaller == RNG_STATE.name:
                    notes.append(_stream_note(flow))
                elif flow.marshaller != FILE.name and (
                    step.name != metrics_step or flow.variable not in step.metrics
                ):
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
    check_split_steps(run, warnings)
    check_process_state(run, warnings)

    def uses_module(index: int, module: str) -> bool:
        names = facts[index].reads | set(facts[index].imports)
        infos = (_latest_info(name, writes[: index + 1]) for name in names)
        return any(info is not None and info.get("module_name") == module for info in infos)

    check_pyplot(run, uses_module, warnings)
    ordered = list(nx.lexicographical_topological_sort(dag, key=order.index))
    for step in steps.values():
        for flow in step.inputs:
            producer = steps[flow.producer]
            if flow.alias_of is None and all(o.variable != flow.variable for o in producer.outputs):
                producer.outputs.append(flow)
        step.outputs.sort(key=lambda f: f.variable)
    return Dataflow(
        pipeline=notebook.pipeline_name,
        notebook=notebook,
        parameters=run.parameters,
        steps=[steps[name] for name in ordered],
        warnings=warnings,
        notes=notes,
        traced=run.traced,
        prologue_modules={
            module.split(".")[0]
            for index, segment in enumerate(run.segments)
            if segment.step == PROLOGUE
            for module, _ in facts[index].imports.values()
        },
    )


def _stream_note(flow: Flow) -> dict[str, str]:
    return {
        "step": flow.consumer,
        "variable": flow.variable,
        "message": f"step '{flow.consumer}' continues the global {flow.variable} stream that "
        f"step '{flow.producer}' left: kale-trace runs it after '{flow.producer}' and restores "
        "that state, so it draws the notebook's numbers",
    }


def _cycle_error(
    notebook: Notebook, dag: nx.DiGraph, steps: dict[str, StepFlow], flow: Flow
) -> KaleTraceError:
    """Data that would flow both ways between steps: no order of the steps can run."""
    path = nx.shortest_path(dag, flow.consumer, flow.producer)
    links = [f"step '{flow.consumer}' reads '{flow.variable}' from step '{flow.producer}'"]
    for before, after in zip(path, path[1:], strict=False):
        names = sorted({f.variable for f in steps[after].inputs if f.producer == before})
        why = f"reads {', '.join(repr(n) for n in names)} from" if names else "runs after (prev:)"
        links.append(f"step '{after}' {why} step '{before}'")
    split = [name for name in (flow.producer, flow.consumer) if _is_split(notebook, name)]
    if split:
        other = flow.consumer if split[0] == flow.producer else flow.producer
        cells = ", ".join(str(c.index) for c in notebook.step(split[0]).cells)
        fix = (
            f"the cells of step '{split[0]}' (cells {cells}) are split around step '{other}': "
            f"give the cells of '{split[0]}' that come after '{other}' their own step, or "
            "merge the steps"
        )
    else:
        fix = "merge the steps, or make each value in the step that first needs it"
    return KaleTraceError(
        "the steps need each other's data, so no order of them can run: " + "; ".join(links),
        notebook=str(notebook.path),
        step=flow.consumer,
        fix=fix,
    )


def _is_split(notebook: Notebook, step: str) -> bool:
    owners = [s.owner for s in notebook.plan if s.owner not in (PROLOGUE, PARAMETERS)]
    runs = [owner for i, owner in enumerate(owners) if i == 0 or owners[i - 1] != owner]
    return runs.count(step) > 1


def _writes_of(index: int, segment: Segment, facts: NameFacts, traced: bool) -> _Write:
    probe = segment.probe
    if traced:
        names = set()
        for key in ("defined", "rebound", "mutated"):
            names |= set(probe.get(key, []))
        # A value that cannot be fingerprinted may have changed, but only where the step
        # could reach it by name.
        touched = facts.reads | facts.binds | facts.deferred_reads | set(probe.get("reads", []))
        names |= set(probe.get("possibly_mutated", [])) & touched
        for group in probe.get("aliases", []) + probe.get("same_object", []):
            if touched & set(group):
                touched |= set(group)
        # Changed through a reference held elsewhere (`d = {"k": a}`, then `a` is written, or
        # pyplot's current figure): the step never held the value, so it cannot pass it on.
        indirect = set(probe.get("mutated", [])) - touched
        names -= indirect
        values = dict(probe.get("values", {}))
        # `import x` again binds the same module object, which the probe cannot tell from
        # no binding: the segment did write it, and it travels as an import.
        for name, info in _static_imports(facts).items():
            if name not in names and name not in probe.get("deleted", []):
                names.add(name)
                values[name] = info
        potential = facts.binds - names - set(probe.get("deleted", []))
        return _Write(
            index,
            segment.step,
            names,
            set(probe.get("deleted", [])),
            values,
            potential,
            probe.get("same_object", []),
            indirect,
            set(probe.get("mutated", [])) | set(probe.get("possibly_mutated", [])),
        )
    # Without a dry run, every binding the AST can see is a potential write; what kind of
    # object imports and definitions bind is known statically.
    values = _static_imports(facts)
    for name in facts.definitions:
        values[name] = {"kind": "function", "type": "function"}
    static = set(values)
    return _Write(index, segment.step, static, set(), values, set(facts.binds) - static)


def _static_imports(facts: NameFacts) -> dict[str, dict[str, Any]]:
    """What the import statements of a segment bind, as the probe would describe it."""
    values: dict[str, dict[str, Any]] = {}
    for name, (module, attribute) in facts.imports.items():
        values[name] = (
            {"kind": "module", "module_name": module, "type": "module"}
            if attribute is None
            else {"kind": "importable", "import": {"module": module, "qualname": attribute}}
        )
    return values


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
    warnings: list[dict[str, str]],
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
            writer = _defining_write(name, traced_writer, writes[:index], consumer, warnings)
            _add_input(name, writer, consumer, "trace", notebook)
    for write in reversed(potential):
        if write.step == PARAMETERS:
            # --no-trace: the parameters cell binds only parameters, so this is one.
            if name in parameter_names and name not in consumer.parameters:
                consumer.parameters.append(name)
        elif write.step not in (consumer.name, PROLOGUE):
            _add_input(name, write, consumer, "ast", notebook)


def _defining_write(
    name: str,
    write: _Write,
    earlier: list[_Write],
    consumer: StepFlow,
    warnings: list[dict[str, str]],
) -> _Write:
    """A module or notebook class changed in place by `write` (`helper.X = 5`, `C.n += 1`)
    reaches later steps as an import or as its source, without the change: say so, and
    take the import or definition from the step that made it."""
    kind = write.values.get(name, {}).get("kind")
    if name not in write.mutated or kind not in ("module", "class"):
        return write
    what = "attributes of module" if kind == "module" else "class attributes of"
    warnings.append(
        {
            "step": consumer.name,
            "variable": name,
            "message": f"step '{write.step}' changes {what} '{name}' in place; step "
            f"'{consumer.name}' gets '{name}' afresh (re-imported or re-defined), without the "
            "change: set it where it is defined, or keep the value in a variable",
        }
    )
    for found in reversed(earlier):
        if name in found.names and name not in found.mutated and found.step != write.step:
            return found
    return write


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
    if kind in ("function", "class") and not info.get("closure"):
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
    group = next((tuple(g) for g in write.same_object if name in g), ())
    flow = Flow(name, write.step, consumer.name, info, marshaller, source, group=group)
    consumer.inputs.append(flow)


def _from_import(name: str, module: str, qualname: str) -> str:
    if "." not in qualname:
        suffix = "" if qualname == name else f" as {name}"
        return f"from {module} import {qualname}{suffix}"
    head, rest = qualname.split(".", 1)
    return f"from {module} import {head} as _kale_import\n{name} = _kale_import.{rest}"


def _definition_source(name: str, write: _Write, notebook: Notebook) -> str | None:
    """The statement that defined a notebook function/class/lambda, to re-run in consumers."""
    step = write.step
    cells = list(notebook.step(step).cells) if step not in (PROLOGUE, PARAMETERS) else []
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


def _complete_alias_groups(segment: Segment, consumer: StepFlow) -> None:
    """A step that writes through one name of an object also writes every other name bound
    to it (`b = a` in one step, `b.append(x)` in the next): it receives them all, as one."""
    mutated = set(segment.probe.get("mutated", [])) | set(segment.probe.get("possibly_mutated", []))
    for flow in list(consumer.inputs):
        if flow.source != "trace" or not (mutated & set(flow.group)):
            continue
        for name in flow.group:
            if all(f.variable != name for f in consumer.inputs):
                consumer.inputs.append(
                    Flow(name, flow.producer, consumer.name, flow.info, flow.marshaller,
                         "trace", group=flow.group)
                )  # fmt: skip


def _mark_aliases(consumer: StepFlow) -> None:
    """Inputs that were one object in the producer stay one object: the first travels, the
    others are re-bound to it (`b = a`), so writes through either are seen by both."""
    first: dict[tuple[str, tuple[str, ...]], str] = {}
    for flow in sorted(consumer.inputs, key=lambda f: f.variable):
        if not flow.group or flow.source != "trace" or flow.alias_of:
            continue
        key = (flow.producer, flow.group)
        if key in first:
            flow.alias_of = first[key]
        else:
            first[key] = flow.variable


def _check_shared_memory(
    segment: Segment, consumer: StepFlow, facts: NameFacts, notebook: Notebook
) -> None:
    """A write through an alias or view whose partner came from another step.

    Each input arrives as its own copy, so memory shared in the notebook is not shared in
    the pipeline: writing one name would silently leave the other unchanged. A view made
    inside the step from one received array is fine.
    """
    received = {f.variable for f in consumer.inputs if f.alias_of is None}
    probe = segment.probe
    mutated = set(probe.get("mutated", [])) | set(probe.get("possibly_mutated", []))
    available = {f.variable for f in consumer.inputs} | facts.binds | set(probe.get("defined", []))
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
