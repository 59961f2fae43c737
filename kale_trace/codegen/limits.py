"""What KFP passes a step on its command line must fit Linux's limit: checked at compile time.

KFP starts each step with its code as one argument (`sh -c <program>`) and all its inputs
and outputs in one `--executor_input` JSON argument. Linux refuses any single argument over
128 KiB (MAX_ARG_STRLEN) with "Argument list too long", and only when the step starts, on
the cluster, after the upload. The compiled spec holds both, so the compile can tell first.
"""

from __future__ import annotations

import json
from typing import Any

from kale_trace.errors import KaleTraceError

ARGUMENT_LIMIT = 128 * 1024
# A cell's code above this is stored compressed in the generated module (render.py).
PACK_CELLS_OVER = 32 * 1024
# What each input or output costs in --executor_input besides a parameter's value: its name
# and JSON, an output file's path, an artifact's type and URI (paths under a typical run
# root: on kfp.local a step with 1000 int outputs took 100 KB under a short root and failed
# to start under one 8 characters longer).
_BYTES = {
    ("inputDefinitions", "parameters"): 30,
    ("outputDefinitions", "parameters"): 130,
    ("inputDefinitions", "artifacts"): 300,
    ("outputDefinitions", "artifacts"): 300,
}
_KIB = 1024


def check_argument_sizes(spec: dict[str, Any]) -> None:
    """Refuse a step whose code or inputs would not fit one command-line argument."""
    components = spec.get("components", {})
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    defaults = _parameter_defaults(spec)
    for task in spec.get("root", {}).get("dag", {}).get("tasks", {}).values():
        component = components.get(task.get("componentRef", {}).get("name", ""), {})
        executor = executors.get(component.get("executorLabel", ""), {})
        step = (task.get("taskInfo") or {}).get("name", "")
        container = executor.get("container", {})
        arguments = container.get("command", []) + container.get("args", [])
        biggest = max((len(arg.encode("utf-8")) for arg in arguments), default=0)
        _check_inputs(task, component, defaults, step)  # first: many inputs make long code too
        if biggest > ARGUMENT_LIMIT:
            raise KaleTraceError(
                f"the step's code is {biggest // _KIB} KB even compressed, more than the "
                f"{ARGUMENT_LIMIT // _KIB} KB Linux allows in the one command-line argument "
                "KFP passes a step's code in",
                fix="data pasted into a cell belongs in a file the step reads (a file the "
                "notebook reads crosses steps as a file); or split the step's cells",
            ).located(step=step)


def _parameter_defaults(spec: dict[str, Any]) -> dict[str, int]:
    """The size of each pipeline parameter's default value, as JSON."""
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {
        name: len(json.dumps(p.get("defaultValue"), ensure_ascii=False).encode("utf-8"))
        for name, p in parameters.items()
    }


def _check_inputs(
    task: dict[str, Any],
    component: dict[str, Any],
    defaults: dict[str, int],
    step: str,
) -> None:
    inputs = task.get("inputs", {}).get("parameters", {})
    values = {
        source.get("componentInputParameter", name): defaults.get(
            source.get("componentInputParameter", ""), 0
        )
        for name, source in inputs.items()
    }
    for name, size in values.items():
        if size > ARGUMENT_LIMIT // 2:
            raise KaleTraceError(
                f"parameter '{name}' is {size // _KIB} KB; KFP passes a step's parameter "
                f"values in one command-line argument, which Linux limits to "
                f"{ARGUMENT_LIMIT // _KIB} KB",
                fix="pass a path or URL of the data as the parameter and read it in the step",
            ).located(step=step)
    ports = {key: component.get(key[0], {}).get(key[1], {}) for key in _BYTES}
    total = sum(values.values()) + sum(
        _BYTES[key] + len(name) for key, named in ports.items() for name in named
    )
    count = sum(len(named) for named in ports.values())
    if total > ARGUMENT_LIMIT:
        raise KaleTraceError(
            f"the step has {count} inputs and outputs (about {total // _KIB} KB in KFP's "
            f"--executor_input argument, which Linux limits to {ARGUMENT_LIMIT // _KIB} KB)",
            fix="gather the values the step receives or makes into fewer variables (a dict or a "
            "list) in the notebook, or split the step",
        ).located(step=step)
