"""What a local run produced, gathered like papermill does: an output notebook, the step
reports and the pipeline metrics.

Every step writes its cells' outputs (nbformat JSON) as its `cell_outputs` artifact; the
output notebook is the notebook with those outputs in its cells, in notebook order.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from kale_trace.codegen.render import OUTPUTS_PORT, REPORT_PORT
from kale_trace.outputs import write_error
from kale_trace.safe_text import redact
from kale_trace.tracer.dataflow import Dataflow


@dataclass
class RunResults:
    """Where the run's notebook and reports are, and the metrics the steps logged."""

    notebook: Path | None
    reports: dict[str, Path] = field(default_factory=dict)  # step -> its HTML report
    metrics: dict[str, float] = field(default_factory=dict)


def collect_results(flow: Dataflow, outputs_root: Path, labels: dict[str, str]) -> RunResults:
    """Write OUTDIR/runs/<ts>/<notebook>.ipynb from the steps' outputs; find reports, metrics.

    `outputs_root` is the run's pipeline root; `labels` maps KFP task names to their display names.
    """
    task_dirs = _task_dirs(flow, outputs_root, labels)
    cell_outputs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    results = RunResults(notebook=None)
    for step in flow.steps:
        folder = task_dirs.get(step.name)
        if folder is None:
            continue
        if (folder / OUTPUTS_PORT).is_file():
            _redact_in_place(folder / OUTPUTS_PORT)
            cell_outputs[step.name] = _read_cell_outputs(folder / OUTPUTS_PORT)
        if (folder / REPORT_PORT).is_file():
            results.reports[step.name] = _copy_report(folder / REPORT_PORT, outputs_root, step.name)
        if step.metrics:
            results.metrics.update(_metrics(folder, set(step.metrics)))
    notebook = output_notebook(flow, cell_outputs)
    path = outputs_root.parent / flow.notebook.path.name
    try:
        path.write_text(redact(nbformat.writes(notebook)) + "\n", encoding="utf-8")
    except OSError as error:
        raise write_error(error, path) from None
    results.notebook = path
    return results


def _task_dirs(flow: Dataflow, root: Path, labels: dict[str, str]) -> dict[str, Path]:
    """step -> the folder kfp.local keeps its task's outputs in (root/<run>/<task>/).

    `labels` gives each task's display name, which is the step's display name."""
    steps = {step.display_name: step.name for step in flow.steps}
    found = {}
    for folder in sorted(root.glob("*/*")):
        step = steps.get(labels.get(folder.name, ""))
        if folder.is_dir() and step is not None:
            found[step] = folder
    return found


def _copy_report(artifact: Path, outputs_root: Path, step: str) -> Path:
    """The report beside the output notebook, as runs/<ts>/reports/<step>.html (step names
    are letters, digits, `-` and `_`)."""
    target = outputs_root.parent / "reports" / f"{step}.html"
    _redact_in_place(artifact)
    try:
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(artifact, target)
    except OSError as error:
        raise write_error(error, target) from None
    return target


def _redact_in_place(path: Path) -> None:
    """What the cells printed is a log, like run.log: no credential kale-trace knows of."""
    try:
        text = path.read_text(encoding="utf-8")
        if redact(text) != text:
            path.write_text(redact(text), encoding="utf-8")
    except UnicodeDecodeError:
        return  # not text: a step stopped mid-write
    except OSError as error:
        raise write_error(error, path) from None


def _read_cell_outputs(path: Path) -> dict[int, list[dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {int(cell["cell"]): list(cell["outputs"]) for cell in data["cells"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a step stopped mid-write: its cells show no outputs


def _metrics(folder: Path, names: set[str]) -> dict[str, float]:
    """The KFP metrics the step logged (its Metrics artifact's metadata)."""
    try:
        artifacts = json.loads((folder / "executor_output.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    for port in artifacts.get("artifacts", {}).values():
        for artifact in port.get("artifacts", []):
            metadata = artifact.get("metadata") or {}
            if metadata and set(metadata) <= names:
                return {k: v for k, v in metadata.items() if isinstance(v, (int, float))}
    return {}


def output_notebook(
    flow: Dataflow, outputs: dict[str, dict[int, list[dict[str, Any]]]]
) -> nbformat.NotebookNode:
    """The notebook with every pipeline cell's outputs from the run, like papermill's.

    A cell run by several steps (the imports cells run in each) shows its first step's
    outputs in run order; cells the pipeline does not run have none.
    """
    notebook = nbformat.read(str(flow.notebook.path), as_version=4)
    owners = {cell.index: cell.step for cell in flow.notebook.cells if cell.origin is None}
    by_cell: dict[int, list[dict[str, Any]]] = {}
    for step in flow.steps:
        for index, cell_outputs in outputs.get(step.name, {}).items():
            if index not in by_cell or owners.get(index) == step.name:
                by_cell[index] = cell_outputs
    count = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = [nbformat.from_dict(o) for o in by_cell.get(index, [])]
        cell.execution_count = None
        if index in by_cell:
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = count
    notebook.metadata["kale_trace"] = {"output_of": "kale-trace run"}
    return notebook
