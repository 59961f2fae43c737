"""Run the pipeline's cells once, in notebook order, probing the namespace after each step.

The result is facts, not guesses: what each step defined, rebound, mutated and deleted, with
the real types and sizes of the values, plus the parameters it ran with.
"""

from __future__ import annotations

import ast
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale_trace.cellcode import plain_python_lenient
from kale_trace.errors import KaleTraceError
from kale_trace.executor.kernel import Kernel
from kale_trace.executor.parameters import (
    Parameter,
    check_known,
    coerce,
    injection_source,
    kfp_type,
    parameter_names,
    resolve_cli_text,
)
from kale_trace.notebook.model import Cell, CellRole, Notebook
from kale_trace.tracer.read_tracking import needs_tracking

PROLOGUE = "(imports and functions)"
PARAMETERS = "(parameters)"


@dataclass
class Segment:
    """A run of consecutive cells of one step (or the prologue/parameters) and its probe."""

    step: str  # a step name, PROLOGUE or PARAMETERS
    cells: list[Cell]
    probe: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_bytes: int = 0


@dataclass
class DryRun:
    parameters: list[Parameter]
    segments: list[Segment]
    traced: bool = True  # False for --no-trace: segments carry no probes
    baseline: dict[str, Any] = field(default_factory=dict)  # the probe before any cell ran


Progress = Callable[[str], None]


def segments_of(notebook: Notebook) -> list[Segment]:
    """Group the cells that run into segments, in notebook order."""
    last_step = notebook.steps[-1].name if notebook.steps else None
    segments: list[Segment] = []
    for cell in notebook.cells:
        if cell.role in (CellRole.SKIP, CellRole.INJECTED):
            continue
        if cell.role in (CellRole.IMPORTS, CellRole.FUNCTIONS):
            owner = PROLOGUE
        elif cell.role is CellRole.PARAMETERS:
            owner = PARAMETERS
        elif cell.role is CellRole.METRICS:
            owner = last_step or PROLOGUE  # metrics are reported by the last step
        else:
            owner = cell.step or PROLOGUE
        if segments and segments[-1].step == owner and owner != PARAMETERS:
            segments[-1].cells.append(cell)
        else:
            segments.append(Segment(owner, [cell]))
    return segments


def resolve_parameters(
    notebook: Notebook,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
    samples: dict[str, Any],
) -> list[Parameter]:
    """Typed parameters: defaults from the notebook (or -p), samples for the dry run only."""
    names = list(defaults)
    where: dict[str, Any] = {"notebook": str(notebook.path)}
    cell = notebook.parameters_cell
    if cell is not None:
        where.update(cell=cell.index, cell_source=cell.source)
    try:
        check_known(overrides, names, "-p/--parameters")
        check_known(samples, names, "--sample-params")
        return [_parameter(name, defaults[name], overrides, samples) for name in names]
    except KaleTraceError as error:
        raise error.located(**where) from None


def _parameter(
    name: str, value: Any, overrides: dict[str, Any], samples: dict[str, Any]
) -> Parameter:
    """One typed parameter; None in the notebook is typed by an override or made optional."""
    default = resolve_cli_text(overrides.get(name, value), None) if value is None else value
    if value is not None or default is not None:
        kind = kfp_type(name, default)
        default = coerce(name, kind, overrides.get(name, default), "-p/--parameters")
        sample = coerce(name, kind, samples.get(name, default), "--sample-params")
        return Parameter(name, kind, default, sample)
    # None and no value given: a JSON-text str parameter (executor/parameters.py's doc).
    sample = resolve_cli_text(samples.get(name), None)
    if sample is not None:
        kfp_type(name, sample)  # the dry run may use any value a parameter can hold
    return Parameter(name, "str", None, sample, optional=True)


def dry_run(
    notebook: Notebook,
    *,
    overrides: dict[str, Any] | None = None,
    samples: dict[str, Any] | None = None,
    cell_timeout: float | None = None,
    progress: Progress = lambda _: None,
    before_close: Callable[[Kernel, DryRun], None] | None = None,
) -> DryRun:
    """Execute the notebook's pipeline cells once in a fresh kernel and probe every step.

    `before_close` runs after the last probe while the kernel still holds every value (the
    compiler's marshalling round-trip check).
    """
    overrides = overrides or {}
    samples = samples or {}
    segments = segments_of(notebook)
    parameters: list[Parameter] = []
    if notebook.parameters_cell is None:
        check_known({**overrides, **samples}, [], "-p/--sample-params")
    with tempfile.TemporaryDirectory(prefix="kale-trace-probe-") as tmp:
        with Kernel(notebook.path, cell_timeout=cell_timeout) as kernel:
            track = any(
                needs_tracking(plain_python_lenient(cell.source))
                for segment in segments
                for cell in segment.cells
            )
            baseline = _baseline_probe(kernel, Path(tmp) / "baseline.json", track_reads=track)
            files = [Path(tmp) / f"probe-{i}.json" for i in range(len(segments))]
            plan = _probe_plan(segments, files, injects=bool(overrides or samples))
            kernel.run_silent(f"{_MODULE}.arm(get_ipython(), {plan!r})")
            for segment in segments:
                progress(f"dry run: {segment.step}")
                started = time.perf_counter()
                for cell in segment.cells:
                    try:
                        kernel.run_cell(cell.source, index=cell.index, tags=cell.tags)
                    except KaleTraceError as error:
                        step = segment.step if segment.step not in (PROLOGUE, PARAMETERS) else None
                        raise error.located(notebook=str(notebook.path), step=step) from None
                    if cell.role is CellRole.PARAMETERS:
                        defaults = _read_values(kernel, parameter_names(cell.source), cell)
                        parameters = resolve_parameters(notebook, defaults, overrides, samples)
                        given = overrides.keys() | samples.keys()
                        injected = {p.name: p.sample for p in parameters if p.name in given}
                        if injected:
                            kernel.run_cell(injection_source(injected), index=cell.index)
                segment.seconds = time.perf_counter() - started
            for segment, file in zip(segments, files, strict=True):
                segment.probe = _read_probe(file, segment)
                segment.peak_rss_bytes = int(segment.probe.get("peak_rss_bytes", 0))
            run = DryRun(parameters=parameters, segments=segments, baseline=baseline)
            if before_close is not None:
                before_close(kernel, run)
    return run


_MODULE = '__import__("kale_trace.tracer.kernel_probe", fromlist=["probe"])'


def _probe_code(path: Path) -> str:
    return f"{_MODULE}.probe_to_file(get_ipython().user_ns, {str(path)!r})"


def _probe_plan(segments: list[Segment], files: list[Path], injects: bool) -> dict[int, str]:
    """After which cell run (counting from 1, as the kernel's hook does) each probe happens:
    the last cell of every segment; the injected parameters cell is one more run."""
    plan: dict[int, str] = {}
    runs = 0
    for segment, file in zip(segments, files, strict=True):
        for cell in segment.cells:
            runs += 1 + (injects and cell.role is CellRole.PARAMETERS)
        plan[runs] = str(file)
    return plan


def _baseline_probe(kernel: Kernel, path: Path, track_reads: bool) -> dict[str, Any]:
    """Reset the kernel-side snapshot (installing read tracking if asked) and probe once."""
    shell = "get_ipython()" if track_reads else ""
    kernel.run_silent(f"{_MODULE}.reset({shell})\n{_probe_code(path)}")
    return _read_probe(path, None)


def _read_probe(path: Path, segment: Segment | None) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report = {"error": f"no probe report: {exc}"}
    if "error" in report:
        where = f" after {segment.step}" if segment else ""
        raise KaleTraceError(
            f"the dry-run probe failed{where}",
            details=report["error"],
            fix="this is a bug in kale-trace; please report it with the notebook",
        )
    return report


def _read_values(kernel: Kernel, names: list[str], cell: Cell) -> dict[str, Any]:
    """The parameters cell's values, as JSON; anything else is refused with the name."""
    expression = (
        f"__import__('json').dumps({{n: get_ipython().user_ns[n] for n in {names!r}}}, "
        "default=lambda o: {'__kale_unsupported__': type(o).__name__})"
    )
    raw = kernel.run_silent("", {"values": expression})["values"]
    values = json.loads(ast.literal_eval(raw))
    for name, value in values.items():
        if isinstance(value, dict) and "__kale_unsupported__" in value:
            raise KaleTraceError(
                f"parameter '{name}' is bound to a {value['__kale_unsupported__']}; pipeline "
                "parameters must be bool, int, float, str, list or dict",
                cell=cell.index,
                cell_source=cell.source,
                fix=f"give '{name}' a literal default of one of those types",
            )
    return values
