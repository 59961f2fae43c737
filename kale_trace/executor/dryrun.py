"""Run the pipeline's cells once, in Kale's order, probing the namespace after each segment.

The result is facts, not guesses: what each step defined, rebound, mutated and deleted, with
the real types and sizes of the values, plus the parameters it ran with. The order is the
pipeline's (`Notebook.plan`): prologue, parameters (then the injected values), the steps'
cells in notebook order, the metrics last.
"""

from __future__ import annotations

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
from kale_trace.executor.originals import Originals
from kale_trace.executor.parameters import (
    Parameter,
    check_known,
    coerce,
    injection_source,
    resolve_cli_text,
    type_of,
)
from kale_trace.notebook.model import PARAMETERS, PROLOGUE, Cell, Notebook, ParameterSpec
from kale_trace.tracer.read_tracking import needs_tracking

__all__ = ["PARAMETERS", "PROLOGUE", "DryRun", "Segment", "dry_run", "resolve_parameters"]


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
    files_restored: list[str] = field(default_factory=list)  # user files the run changed, put back
    files_changed: list[str] = field(default_factory=list)  # changed, and could not be put back


Progress = Callable[[str], None]


def segments_of(notebook: Notebook) -> list[Segment]:
    """The notebook's plan as segments to run and probe."""
    return [Segment(s.owner, list(s.cells)) for s in notebook.plan]


def resolve_parameters(
    notebook: Notebook, overrides: dict[str, Any], samples: dict[str, Any]
) -> list[Parameter]:
    """Typed parameters: defaults from the notebook (or -p), samples for the dry run only."""
    names = [spec.name for spec in notebook.parameters]
    where: dict[str, Any] = {"notebook": str(notebook.path)}
    cells = notebook.parameter_cells
    if cells:
        where.update(cell=cells[0].index, cell_source=cells[0].source)
        where["notebook"] = cells[0].origin or where["notebook"]
    try:
        check_known(overrides, names, "-p/--parameters", bool(cells))
        check_known(samples, names, "--sample-params", bool(cells))
        return [_parameter(spec, overrides, samples) for spec in notebook.parameters]
    except KaleTraceError as error:
        raise error.located(**where) from None


def _parameter(
    spec: ParameterSpec, overrides: dict[str, Any], samples: dict[str, Any]
) -> Parameter:
    """One typed parameter; None in the notebook is typed by an override or made optional."""
    name, value = spec.name, spec.default
    default = resolve_cli_text(overrides.get(name), None) if value is None else value
    if value is not None or default is not None:
        kind = type_of(name, default)
        default = coerce(name, kind, overrides.get(name, default), "-p/--parameters")
        sample = coerce(name, kind, samples.get(name, default), "--sample-params")
        return Parameter(name, kind, default, sample)
    # None and no value given: a JSON-text str parameter (executor/parameters.py's doc).
    sample = resolve_cli_text(samples.get(name), None)
    if sample is not None:
        type_of(name, sample)  # the dry run may use any value a parameter can hold
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
    """Execute the notebook's pipeline cells once in a fresh kernel and probe every segment.

    `before_close` runs after the last probe while the kernel still holds every value (the
    compiler's marshalling round-trip check).
    """
    parameters = resolve_parameters(notebook, overrides or {}, samples or {})
    given = (overrides or {}).keys() | (samples or {}).keys()
    injected = {p.name: p.sample for p in parameters if p.name in given}
    segments = segments_of(notebook)
    with (
        tempfile.TemporaryDirectory(prefix="kale-trace-probe-") as tmp,
        Originals(notebook.path.parent, Path(tmp) / "originals") as originals,
        Kernel(notebook.path, cell_timeout=cell_timeout) as kernel,
    ):
        track = any(
            needs_tracking(plain_python_lenient(cell.source))
            for segment in segments
            for cell in segment.cells
        )
        baseline = _baseline_probe(kernel, Path(tmp), track_reads=track)
        files = [Path(tmp) / f"probe-{i}.json" for i in range(len(segments))]
        plan = _probe_plan(segments, files, injects=bool(injected))
        kernel.run_silent(f"{_MODULE}.arm(get_ipython(), {plan!r})")
        for segment in segments:
            progress(f"dry run: {segment.step}")
            _run_segment(kernel, notebook, segment, injected)
        for segment, file in zip(segments, files, strict=True):
            segment.probe = _read_probe(file, segment)
            segment.peak_rss_bytes = int(segment.probe.get("peak_rss_bytes", 0))
        run = DryRun(parameters=parameters, segments=segments, baseline=baseline)
        if before_close is not None:
            before_close(kernel, run)
    run.files_restored, run.files_changed = originals.restored, originals.unrestored
    return run


def _run_segment(
    kernel: Kernel, notebook: Notebook, segment: Segment, injected: dict[str, Any]
) -> None:
    """Run a segment's cells; after the parameters cells, bind the injected values."""
    started = time.perf_counter()
    step = segment.step if segment.step not in (PROLOGUE, PARAMETERS) else None
    for cell in segment.cells:
        try:
            kernel.run_cell(cell.source, index=cell.index, tags=cell.tags)
        except KaleTraceError as error:
            if segment.step == PROLOGUE:
                error = _prologue_error(error, notebook, cell)
            raise error.located(notebook=cell.origin or str(notebook.path), step=step) from None
    if segment.step == PARAMETERS and injected:
        last = segment.cells[-1]
        kernel.run_cell(injection_source(injected), index=last.index)
    segment.seconds = time.perf_counter() - started


def _prologue_error(error: KaleTraceError, notebook: Notebook, cell: Cell) -> KaleTraceError:
    """A NameError in an imports/functions cell for a name a step binds: Kale's order runs
    those cells before every step, so they cannot use what a step makes."""
    from kale_trace.tracer.ast_names import analyse

    missing = error.message.split("'")[1] if "NameError" in error.message else None
    binders = [
        s.name
        for s in notebook.steps
        if missing and any(missing in analyse(c.source).binds for c in s.cells)
    ]
    if not binders:
        return error
    error.fix = (
        f"imports and functions cells run before every step (as in Kale), but '{missing}' "
        f"is made by step '{binders[0]}': move that code into a step, or make '{missing}' "
        "in this cell"
    )
    return error


_MODULE = '__import__("kale_trace.tracer.kernel_probe", fromlist=["probe"])'


def _probe_code(path: Path) -> str:
    return f"{_MODULE}.probe_to_file(get_ipython().user_ns, {str(path)!r})"


def _probe_plan(segments: list[Segment], files: list[Path], injects: bool) -> dict[int, str]:
    """After which cell run (counting from 1, as the kernel's hook does) each probe happens:
    the last cell of every segment; the injected parameters cell is one more run."""
    plan: dict[int, str] = {}
    runs = 0
    for segment, file in zip(segments, files, strict=True):
        runs += len(segment.cells) + (injects and segment.step == PARAMETERS)
        plan[runs] = str(file)
    return plan


def _baseline_probe(kernel: Kernel, tmp: Path, track_reads: bool) -> dict[str, Any]:
    """Reset the kernel-side snapshot (installing read tracking if asked, and keeping the
    originals of the user's files in `tmp/originals`) and probe once."""
    shell = "get_ipython()" if track_reads else "None"
    backup = str(tmp / "originals")
    path = tmp / "baseline.json"
    kernel.run_silent(f"{_MODULE}.reset({shell}, {backup!r})\n{_probe_code(path)}")
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
