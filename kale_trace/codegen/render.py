"""Render the dataflow as a readable, deterministic KFP v2 pipeline module.

All names are identifiers validated upstream and all values go through `literals`, so the
module's structure is fixed by the template and nothing from the notebook can change it.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from kale_trace.cellcode import step_cell
from kale_trace.codegen.emitted import select_definitions
from kale_trace.codegen.formatting import format_python
from kale_trace.codegen.limits import PACK_CELLS_OVER
from kale_trace.codegen.literals import (
    BUILTIN_NAMES,
    code_literal,
    parameter_names,
    port_name,
    value_literal,
)
from kale_trace.codegen.packages import pinned_requirements
from kale_trace.codegen.step_cells import cells_source
from kale_trace.codegen.step_settings import PipelineSettings, pipeline_settings, task_settings
from kale_trace.errors import KaleTraceError
from kale_trace.marshal import (
    ARTIFACT_IO_SOURCE,
    FILE,
    RNG_STATE,
    Marshaller,
    choose_marshaller,
    parameter_type,
)
from kale_trace.notebook.model import Cell
from kale_trace.notebook.settings import check_image
from kale_trace.tracer.dataflow import Dataflow, Flow, StepFlow

_DSL_IMPORTS = ["Artifact", "Dataset", "HTML", "Input", "Metrics", "Model", "Output", "OutputPath"]
_MODULE_NAMES = {"dsl", "compiler", "kfp", "BASE_IMAGE", *_DSL_IMPORTS}
_BODY_NAMES = {"linecache", "json", "cloudpickle", "sys", "types"}
OUTPUTS_PORT = "cell_outputs"  # every step: its cells' outputs, nbformat JSON (the runner reads it)
REPORT_PORT = "step_report"  # the step's report (HTML), unless `report:false`

_WRITE_PARAMETER = """def _kale_write_parameter(path, value, name, kind):
    # KFP reads string outputs as text and every other type as JSON.
    import json

    if type(value).__name__ != kind and not (kind == "float" and type(value) is int):
        raise SystemExit(
            f"kale-trace: {name!r} was of type {kind} in the dry run, but this run made it a "
            f"{type(value).__name__}, which its KFP output cannot hold: compile with parameter "
            "values that give it this run's type (--sample-params), or keep its type fixed"
        )
    with open(path, "w", encoding="utf-8") as file:
        file.write(value if isinstance(value, str) else json.dumps(value))"""

_INFLATE = """def _kale_inflate(packed):
    # A cell over 32 KB is kept compressed: KFP passes a step's code in one command-line
    # argument, which Linux limits to 128 KB.
    import base64
    import zlib

    return zlib.decompress(base64.b85decode(packed)).decode("utf-8", "surrogatepass")"""

_SETTINGS = """def _kale_settings(settings):
    # The settings the notebook's kernel had when this step started: pandas sizes tables
    # differently in a kernel than in a plain process, and cells may have set others.
    import importlib
    import os
    import sys

    if "cwd" in settings:  # first: the notebook's relative import path entries mean it
        os.chdir(settings["cwd"]["path"])
    sys.path[:0] = settings.get("sys.path", {}).get("insert", [])
    sys.path.extend(settings.get("sys.path", {}).get("append", []))
    for name, value in settings.get("environ", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for name, value in settings.get("pandas", {}).items():
        importlib.import_module("pandas").set_option(name, value)
    if "numpy" in settings:
        importlib.import_module("numpy").set_printoptions(**settings["numpy"])
    context = importlib.import_module("decimal").getcontext()
    for name, value in settings.get("decimal", {}).items():
        setattr(context, name, value)
    torch = settings.get("torch", {})
    if "default_dtype" in torch:
        module = importlib.import_module("torch")
        module.set_default_dtype(getattr(module, torch["default_dtype"]))
    if torch.get("deterministic_algorithms"):
        importlib.import_module("torch").use_deterministic_algorithms(True)"""

_OPTIONAL = """def _kale_save_optional(namespace, name, path):
    # The dry run never bound this name: pass it on only if this run does.
    import cloudpickle

    with open(path, "wb") as file:
        cloudpickle.dump((name in namespace, namespace.get(name)), file)

def _kale_load_optional(namespace, name, path):
    import cloudpickle

    with open(path, "rb") as file:
        present, value = cloudpickle.load(file)
    if present:
        namespace[name] = value"""

_JSON_PARAMETER = """def _kale_json_parameter(name, text, kind):
    # Lists, dicts, big ints and None travel as JSON text, exactly ("null" is None).
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = text  # None in the notebook: text that is not JSON stays text
    if kind is not None and type(value).__name__ != kind:
        raise SystemExit(f"pipeline parameter {name!r} must be a JSON {kind}, got {text!r}")
    return value"""

_LOG_METRICS = """def _kale_log_metrics(metrics, namespace, names):
    # pipeline-metrics: every numeric value becomes a KFP metric of this step.
    import numbers

    for name in names:
        value = namespace.get(name)
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            metrics.log_metric(name, float(value))"""


@dataclass
class _Port:
    """How one value enters or leaves a component."""

    flow: Flow
    io_name: str
    marshaller: Marshaller
    parameter: str | None  # KFP parameter type when it travels as a parameter


@dataclass
class _Names:
    """Allocates unique identifiers, preferring the notebook's own names."""

    taken: set[str] = field(default_factory=set)

    def take(self, preferred: str, *fallbacks: str) -> str:
        for candidate in (preferred, *fallbacks):
            if candidate not in self.taken and not candidate.startswith("_kale"):
                self.taken.add(candidate)
                return candidate
        base, number = fallbacks[-1] if fallbacks else preferred, 2
        while f"{base}_{number}" in self.taken:
            number += 1
        self.taken.add(f"{base}_{number}")
        return f"{base}_{number}"


@dataclass(frozen=True)
class _ModuleNames:
    """Every module-level name of the generated pipeline, chosen once."""

    module: _Names  # allocator for further module-level names (volumes, kubernetes)
    parameters: dict[str, str]  # notebook parameter -> the pipeline's parameter name
    functions: dict[str, str]  # step -> component function
    tasks: dict[str, str]  # step -> task variable in the pipeline function
    pipeline: str


def module_names(flow: Dataflow) -> _ModuleNames:
    """Names for the pipeline's parameters, components, tasks and the pipeline function."""
    parameters = parameter_names([p.name for p in flow.parameters], _MODULE_NAMES)
    taken = _Names(set(_MODULE_NAMES) | set(parameters.values()))
    functions = {s.name: taken.take(s.name, f"{s.name}_step") for s in flow.steps}
    tasks = {s.name: taken.take(f"{s.name}_task") for s in flow.steps}
    pipeline = taken.take("pipeline", port_name(f"{flow.pipeline.replace('-', '_')}_pipeline"))
    return _ModuleNames(taken, parameters, functions, tasks, pipeline)


def render_pipeline(
    flow: Dataflow,
    *,
    base_image: str | None = None,
    local: bool = False,
    yaml_name: str = "pipeline.yaml",
    install: bool = True,
    requirements: Sequence[str] | None = None,
) -> str:
    """The pipeline module's source. `local=True` renders for kfp.local (no installs).

    Each step installs the distributions it imports, pinned to the dry run's versions;
    `install=False` installs nothing (the image has it all) and `requirements` replaces
    the detected pins with exactly these lines in every step.
    """
    env = Environment(
        loader=PackageLoader("kale_trace", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Python, not HTML: every value is a checked literal instead
    )
    notebook_name = flow.notebook.path.name
    names = module_names(flow)
    outputs: dict[tuple[str, str], _Port] = {}
    prologue = [_cell(c, notebook_name, None) for c in flow.prologue]
    parameter_cells = (
        [_cell(c, notebook_name, None) for c in flow.notebook.parameter_cells]
        if flow.notebook.parameters_code
        else []
    )
    shared_packed = any(c["packed"] for c in prologue + parameter_cells)
    rendered_steps = []
    for step in flow.steps:
        rendered = _render_step(step, flow, names, outputs, local)
        if shared_packed or any(c["packed"] for c in rendered["cells"]):
            rendered["helpers"].append(_INFLATE)
        if not local and (not install or requirements is not None):
            rendered["packages"] = [value_literal(r) for r in requirements or ()] if install else []
        rendered_steps.append(rendered)
    shared = pipeline_settings(flow.notebook, names.module.take, local=local)
    task_blocks = [
        _task(step, flow, names, rendered["arguments"], shared)
        for step, rendered in zip(flow.steps, rendered_steps, strict=True)
    ]
    config = flow.notebook.config
    if base_image:
        check_image(base_image, "--base-image")
    image = base_image or config.base_image
    image = image or f"python:{sys.version_info.major}.{sys.version_info.minor}"
    source = env.get_template("pipeline.py.j2").render(
        pipeline_name_literal=value_literal(flow.pipeline),
        description_literal=value_literal(
            config.description or f"Compiled by kale-trace from {notebook_name}"
        ),
        pipeline_name_text=_comment_safe(flow.pipeline),
        notebook_name=_comment_safe(notebook_name),
        dsl_imports=_DSL_IMPORTS,
        base_image=value_literal(image),
        local=local,
        prologue=prologue,
        parameter_cells=parameter_cells,
        steps=rendered_steps,
        pipeline_function=names.pipeline,
        parameters=[
            f"{names.parameters[p.name]}: {p.kfp_type} = {value_literal(p.kfp_default)}"
            for p in flow.parameters
        ],
        kubernetes=shared.kubernetes,
        setup=shared.setup,
        tasks=task_blocks,
        yaml_literal=value_literal(yaml_name),
    )
    return format_python(source)


def _comment_safe(text: str) -> str:
    """Text for docstrings: no quote, backslash or control character can end them."""
    return "".join(ch if ch.isprintable() and ch not in "'\\\"" else "?" for ch in text)


def _cell(cell: Cell, notebook_name: str, step: str | None) -> dict[str, Any]:
    notebook_name = Path(cell.origin).name if cell.origin else notebook_name
    where = f"{notebook_name} cell {cell.index}" + (f", step {step}" if step else "")
    try:
        runs = step_cell(cell.source)
    except KaleTraceError as error:
        where_cell = {"cell": cell.index, "cell_source": cell.source, "step": step}
        raise error.located(notebook=cell.origin, **where_cell) from None
    literal = code_literal(runs.code)
    packed = len(literal.encode("utf-8", "surrogatepass")) > PACK_CELLS_OVER
    if packed:
        blob = zlib.compress(runs.code.encode("utf-8", "surrogatepass"), 9)
        literal = f"_kale_inflate({value_literal(base64.b85encode(blob).decode('ascii'))})"
    # Outputs are kept by the cell's place in this notebook (a composed notebook's are not).
    options = f", cell={cell.index}" if cell.origin is None else ""
    if runs.plain is None:
        options += ", needs_ipython=True"  # no plain-Python form: `!cmd`, `%%writefile`, ...
    elif runs.plain != runs.code:
        options += f", plain={code_literal(runs.plain)}"
    if "raises-exception" in cell.tags:
        options += ", may_raise=True"
    return {
        "filename": value_literal(f"<{where}>"),
        "code": literal,
        "packed": packed,
        "options": options,
        "packages": runs.packages,
        "needs_ipython": runs.plain is None,
    }


def _file_name(path: str) -> str:
    """An identifier for a file crossing steps: `data/tmp.parquet` -> `file_data_tmp_parquet`."""
    return "file_" + re.sub(r"[^0-9A-Za-z_]", "_", path)


def _input_names(item: Flow) -> tuple[str, str]:
    base = _file_name(item.variable) if item.marshaller == FILE.name else port_name(item.variable)
    return base, f"{base}_from_{item.producer}"


def _output_names(item: Flow) -> tuple[str, str]:
    base = _file_name(item.variable) if item.marshaller == FILE.name else port_name(item.variable)
    return base, f"{base}_out"


def _port(flow: Flow, io_name: str) -> _Port:
    if flow.marshaller == FILE.name:
        return _Port(flow, io_name, FILE, None)
    if flow.optional:
        return _Port(
            flow, io_name, choose_marshaller({"type": "unknown", "mro": [], "kind": "data"}), None
        )
    marshaller = choose_marshaller(flow.info)
    parameter = parameter_type(flow.info) if marshaller.artifact is None else None
    return _Port(flow, io_name, marshaller, parameter)


def _render_step(
    step: StepFlow,
    flow: Dataflow,
    names: _ModuleNames,
    outputs: dict[tuple[str, str], _Port],
    local: bool,
) -> dict[str, Any]:
    notebook_name = flow.notebook.path.name
    function = names.functions[step.name]
    io = _Names(set(_BODY_NAMES) | BUILTIN_NAMES)
    step_settings = flow.notebook.step(step.name).settings  # the step's tags (limit:, image:)
    cells = [_cell(c, notebook_name, step.name) for c in step.cells]
    kept = _kept_outputs(step, step_settings.report, io)
    arguments: list[str] = []  # the task's call: io name = pipeline parameter or output
    restores: list[str] = []  # global generator states, set right before the step's cells
    signature: list[str] = list(kept["signature"])
    loads: list[str] = []
    saves: list[str] = []
    helpers: dict[str, str] = {"cells": cells_source()}
    # Marshallers' sources by save function, and the functions this component calls.
    marshal_sources: dict[str, str] = {}
    entries: set[str] = set()
    parameters = {p.name: p for p in flow.parameters}
    for name in step.parameters:
        io_name = io.take(port_name(name, "p"), port_name(f"{name}_param", "p"))
        parameter = parameters[name]
        signature.append(f"{io_name}: {parameter.kfp_type}")
        arguments.append(f"{io_name}={names.parameters[name]}")
        if parameter.json_text:
            helpers["json_parameter"] = _JSON_PARAMETER
            kind = None if parameter.optional else parameter.type
            loads.append(
                f"_kale_ns[{name!r}] = _kale_json_parameter({name!r}, {io_name}, {kind!r})"
            )
        else:
            loads.append(f"_kale_ns[{name!r}] = {io_name}")
    inputs: list[tuple[Flow, _Port]] = []
    for item in step.inputs:
        if item.alias_of:
            continue  # the same object as another input: re-bound below
        port = _port(item, io.take(*_input_names(item)))
        inputs.append((item, port))
        source = outputs[(item.producer, item.variable)].io_name
        arguments.append(f"{port.io_name}={names.tasks[item.producer]}.outputs[{source!r}]")
        if item.marshaller == FILE.name:
            signature.append(f"{port.io_name}: Input[Artifact]")
            helpers["file"] = FILE.source
            loads.append(f"_kale_restore_file({port.io_name}.path, {value_literal(item.variable)})")
        elif port.parameter:
            signature.append(f"{port.io_name}: {port.parameter}")
            loads.append(f"_kale_ns[{item.variable!r}] = {port.io_name}")
        elif item.optional:
            signature.append(f"{port.io_name}: Input[Artifact]")
            helpers["optional"] = _OPTIONAL
            loads.append(f"_kale_load_optional(_kale_ns, {item.variable!r}, {port.io_name}.path)")
        else:
            signature.append(f"{port.io_name}: Input[{port.marshaller.artifact}]")
            marshal_sources[port.marshaller.save_function] = port.marshaller.source
            entries |= {"_kale_read_artifact", port.marshaller.load_function}
            load = port.marshaller.load_call(port.io_name, item.variable, item.producer)
            if port.marshaller is RNG_STATE:
                restores.append(load)  # right before the step's own cells
            else:
                loads.append(f"_kale_ns[{item.variable!r}] = {load}")
    for item in step.inputs:
        if item.alias_of:
            loads.append(f"_kale_ns[{item.variable!r}] = _kale_ns[{item.alias_of!r}]  # one object")
    for item in step.outputs:
        port = _port(item, io.take(*_output_names(item)))
        outputs[(step.name, item.variable)] = port
        if item.marshaller == FILE.name:
            signature.append(f"{port.io_name}: Output[Artifact]")
            helpers["file"] = FILE.source
            saves.append(f"_kale_keep_file({value_literal(item.variable)}, {port.io_name}.path)")
        elif port.parameter:
            signature.append(f"{port.io_name}: OutputPath({port.parameter})")
            helpers["write_parameter"] = _WRITE_PARAMETER
            saves.append(
                f"_kale_write_parameter({port.io_name}, _kale_ns[{item.variable!r}], "
                f"{item.variable!r}, {port.parameter!r})"
            )
        elif item.optional:
            signature.append(f"{port.io_name}: Output[Artifact]")
            helpers["optional"] = _OPTIONAL
            saves.append(f"_kale_save_optional(_kale_ns, {item.variable!r}, {port.io_name}.path)")
        else:
            signature.append(f"{port.io_name}: Output[{port.marshaller.artifact}]")
            marshal_sources[port.marshaller.save_function] = port.marshaller.source
            entries |= {"_kale_write_artifact", port.marshaller.save_function}
            value = _value_of(item, port.marshaller)
            saves.append(port.marshaller.save_call(port.io_name, value))
    settings = _step_settings(step, flow)
    if settings:
        helpers["settings"] = _SETTINGS
        restores.insert(0, f"_kale_settings({value_literal(settings)})")
    if entries:  # only the save or load side each port needs, and their helpers
        sources = [ARTIFACT_IO_SOURCE, *(marshal_sources[k] for k in sorted(marshal_sources))]
        helpers["marshal"] = select_definitions(sources, entries)
    if step.metrics:
        metrics = io.take("metrics", "pipeline_metrics")
        signature.append(f"{metrics}: Output[Metrics]")
        helpers["metrics"] = _LOG_METRICS
        saves.append(f"_kale_log_metrics({metrics}, _kale_ns, {value_literal(step.metrics)})")
    reemit = [
        {
            "filename": value_literal(f"<{notebook_name}: import {name}>"),
            "code": code_literal(line + "\n"),
            "options": "",
        }
        for name, line in sorted(step.imports.items())
    ] + [
        {
            "filename": value_literal(f"<{notebook_name}: definition of {name}>"),
            "code": code_literal(source + "\n"),
            "options": "",
        }
        for name, source in step.definitions.items()
    ]
    packages: list[str] = []
    if not local:
        marshal_packages = {p for _, port in inputs for p in port.marshaller.packages}
        marshal_packages |= {
            p
            for key, port in outputs.items()
            if key[0] == step.name
            for p in port.marshaller.packages
        }
        if "optional" in helpers:
            marshal_packages.add("cloudpickle")
        if entries:
            marshal_packages.add("xxhash")  # fast checksums (sha256 is the fallback)
        value_modules = {
            f.info.get("type", "").split(".")[0]
            for f in step.inputs
            if "." in f.info.get("type", "")
        }
        if any(c["needs_ipython"] for c in cells):
            marshal_packages.add("ipython")  # `!cmd`, `%%writefile`: IPython runs them
        packages = pinned_requirements(
            flow.prologue_modules | step.modules | value_modules, marshal_packages
        )
        packages += _installed_by_cells(flow, cells, packages)
    return {
        "function": function,
        "display_text": _comment_safe(step.display_name),
        "cell_list": ", ".join(str(c.index) for c in step.cells),
        "image": value_literal(step_settings.image) if step_settings.image else "BASE_IMAGE",
        "packages": [value_literal(p) for p in packages],
        "signature": signature,
        "helpers": [helpers[key] for key in sorted(helpers)],
        "loads": loads,
        "reemit": reemit,
        "cells": cells,
        "outputs_port": kept["outputs"],
        "report": kept["report"],
        "saves": saves,
        "restores": restores,
        "arguments": arguments,
    }


def _kept_outputs(step: StepFlow, report: bool | None, io: _Names) -> dict[str, Any]:
    """The ports for the cells' outputs and the step's report (Kale's `report:`, on unless
    `report:false`); taken before any notebook name, so the runner knows them."""
    outputs = io.take(OUTPUTS_PORT)
    kept: dict[str, Any] = {"outputs": outputs, "signature": [f"{outputs}: Output[Artifact]"]}
    kept["report"] = None
    if report is not False:
        port = io.take(REPORT_PORT)
        kept["signature"].append(f"{port}: Output[HTML]")
        own = [c.index for c in step.cells if c.origin is None]
        kept["report"] = (
            f"_kale_cells.report({port}.path, {value_literal(step.display_name)}, {own!r}, "
            f"explicit={report is True})"
        )
    return kept


def _installed_by_cells(flow: Dataflow, cells: list[dict[str, Any]], pins: list[str]) -> list[str]:
    """What the step's `%pip install` lines (and the prologue's) name, unless pinned already."""
    prologue = [step_cell(c.source).packages for c in flow.prologue]
    named = [p for group in prologue for p in group] + [p for c in cells for p in c["packages"]]
    have = {pin.split("==")[0].lower() for pin in pins}
    extra: list[str] = []
    for requirement in named:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        if name not in have:
            have.add(name)
            extra.append(requirement)
    return extra


def _step_settings(step: StepFlow, flow: Dataflow) -> dict[str, dict[str, Any]]:
    """The step's settings for the modules it has; the process's own (path, directory,
    environment) and the stdlib's decimal it always has."""
    modules = flow.prologue_modules | step.modules | {"decimal", "sys.path", "cwd", "environ"}
    modules |= {f.info.get("type", "").split(".")[0] for f in step.inputs}
    return {name: values for name, values in sorted(step.settings.items()) if name in modules}


def _value_of(item: Flow, marshaller: Marshaller) -> str:
    """The expression a save call writes: the variable, or the generator's name."""
    if marshaller is RNG_STATE:
        return value_literal(item.variable)
    return f"_kale_ns[{item.variable!r}]"


def _task(
    step: StepFlow,
    flow: Dataflow,
    names: _ModuleNames,
    arguments: list[str],
    shared: PipelineSettings,
) -> dict[str, Any]:
    tasks = names.tasks
    producers = {item.producer for item in step.inputs if not item.alias_of}
    extras = []
    order_only = [name for name in step.after if name not in producers]
    if order_only:
        extras.append(f"{tasks[step.name]}.after({', '.join(tasks[n] for n in order_only)})")
    extras.extend(task_settings(tasks[step.name], flow.notebook.step(step.name).settings, shared))
    return {
        "variable": tasks[step.name],
        "function": names.functions[step.name],
        "arguments": arguments,
        "display_literal": value_literal(step.display_name),
        "extras": extras,
    }


def pipeline_arguments(flow: Dataflow, values: dict[str, Any]) -> dict[str, Any]:
    """Run arguments by notebook parameter name, as the pipeline function takes them."""
    names = module_names(flow).parameters
    parameters = {p.name: p for p in flow.parameters}
    arguments = {}
    for name, value in values.items():
        text = parameters[name].json_text and not isinstance(value, str)
        arguments[names[name]] = json.dumps(value) if text else value
    return arguments
