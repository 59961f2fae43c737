"""The whole compile: notebook → dry run → dataflow → pipeline module → KFP YAML.

One direction, each stage feeding the next (DESIGN §1); everything lands in the output
folder at once or not at all.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kale_trace.cellcode import python_source, step_cell
from kale_trace.codegen.kfp_compile import compile_to_yaml
from kale_trace.codegen.render import render_pipeline
from kale_trace.dataflow_json import dumps, to_dict
from kale_trace.errors import KaleTraceError
from kale_trace.executor.dryrun import DryRun, dry_run
from kale_trace.executor.kernel import Kernel
from kale_trace.marshal.roundtrip import check_round_trips
from kale_trace.notebook.loader import load_notebook
from kale_trace.notebook.model import Notebook
from kale_trace.outputs import atomic_folder, check_target
from kale_trace.report import write_reports
from kale_trace.tracer.dataflow import Dataflow, build_dataflow
from kale_trace.tracer.file_flows import restored_files
from kale_trace.tracer.static_run import static_run


@dataclass(frozen=True)
class CompileOptions:
    overrides: dict[str, Any]  # -p / -f: the pipeline's defaults
    samples: dict[str, Any]  # --sample-params: the dry run only
    trace: bool = True
    cell_timeout: float | None = None
    base_image: str | None = None
    install: bool = True  # False (--no-install): no packages_to_install at all
    requirements: tuple[str, ...] | None = None  # --requirements: installed instead of pins
    round_trip: bool = True  # prove every crossing value survives its marshaller (DESIGN §4)


@dataclass(frozen=True)
class Compiled:
    dataflow: Dataflow
    outdir: Path
    python_path: Path
    yaml_path: Path
    dataflow_path: Path


def trace_notebook(
    path: Path, options: CompileOptions, progress: Callable[[str], None] = lambda _: None
) -> Dataflow:
    """Load and dry-run the notebook (or analyse it statically) into its dataflow."""
    notebook = load_notebook(path)
    count = len(notebook.steps)
    progress(f"notebook {path.name}: {count} step{'s' if count != 1 else ''}")
    _check_cells_compile(notebook)
    if options.trace:
        checked: list[Dataflow] = []

        def check(kernel: Kernel, run: DryRun) -> None:
            # While the kernel still holds the values: save, reload fresh, compare.
            checked.append(build_dataflow(notebook, run))
            check_round_trips(kernel, checked[0], progress)

        run = dry_run(
            notebook,
            overrides=options.overrides,
            samples=options.samples,
            cell_timeout=options.cell_timeout,
            progress=progress,
            before_close=check if options.round_trip else None,
        )
        if checked:
            restored_files(run, checked[0].notes, checked[0].warnings)
            return checked[0]
        flow = build_dataflow(notebook, run)
        restored_files(run, flow.notes, flow.warnings)
        return flow
    else:
        run = static_run(notebook, options.overrides)
    return build_dataflow(notebook, run)


def _check_cells_compile(notebook: Notebook) -> None:
    """Refuse cells a step cannot run (not Python, `%connect_info`, `%matplotlib widget`)
    before any cell runs."""
    for cell in notebook.cells:
        where = {"cell": cell.index, "cell_source": cell.source, "step": cell.step}
        where["notebook"] = cell.origin or str(notebook.path)
        try:
            ast.parse(python_source(cell.source))
        except (SyntaxError, ValueError) as exc:  # ValueError: a null byte in the source
            line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            raise KaleTraceError(
                f"the cell is not valid Python: {getattr(exc, 'msg', exc)}{line}",
                fix="fix the cell so it runs in Jupyter, or tag it skip",
                **where,
            ) from None
        try:
            step_cell(cell.source)
        except KaleTraceError as error:
            raise error.located(**where) from None


def compile_notebook(
    path: Path,
    outdir: Path,
    options: CompileOptions,
    progress: Callable[[str], None] = lambda _: None,
) -> Compiled:
    """Trace and compile; writes <pipeline>.py, .yaml, dataflow.json and the type report."""
    check_target(outdir)  # refuse a folder kale-trace may not replace before the dry run
    flow = trace_notebook(path, options, progress)
    name = flow.pipeline
    with atomic_folder(outdir) as staging:
        try:
            source = render_pipeline(
                flow,
                base_image=options.base_image,
                yaml_name=f"{name}.yaml",
                install=options.install,
                requirements=options.requirements,
            )
            (staging / f"{name}.py").write_text(source, encoding="utf-8")
            progress("compiling with the KFP compiler")
            compile_to_yaml(staging / f"{name}.py", staging / f"{name}.yaml")
        except KaleTraceError as error:
            raise error.located(notebook=str(path)) from None
        (staging / "dataflow.json").write_text(dumps(flow), encoding="utf-8")
        write_reports(to_dict(flow), staging)  # report.html, report.md (DESIGN §6)
    outdir = outdir.resolve()
    return Compiled(
        flow, outdir, outdir / f"{name}.py", outdir / f"{name}.yaml", outdir / "dataflow.json"
    )
