"""Kale 2.3's composition: `notebook:<name>` cells put other notebooks into one pipeline.

The referenced notebook is the cell's `notebook_path` metadata, relative to the notebook that
holds the cell; its steps become `<name>_<step>`, values cross between notebooks by name, and
the pipeline prints what running the notebooks one after the other prints.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import write_notebook

from kale_trace.cli import main
from kale_trace.errors import KaleTraceError
from kale_trace.notebook.loader import load_notebook
from kale_trace.runners.local import run_locally


def _reference(path: Path, cells: list, references: dict[int, str]) -> Path:
    """A notebook whose cells at the given positions point at other notebooks."""
    write_notebook(path, cells)
    nb = nbformat.read(str(path), as_version=4)
    for position, target in references.items():
        nb.cells[position].metadata["notebook_path"] = target
    nbformat.write(nb, str(path))
    return path


def _pipeline(tmp_path: Path) -> Path:
    (tmp_path / "parts").mkdir()
    write_notebook(tmp_path / "parts" / "prep.ipynb", [
        ("skip", "!pip install pandas"),
        ("imports", "import statistics"),
        ("step:load", "raw = [3, 1, 4, 1, 5]"),
        ([], "raw = raw + [9]"),  # untagged: continues load, inside prep.ipynb
        (["step:clean", "prev:load"], "clean = sorted(set(raw))"),
    ], metadata={"pipeline_name": "prep-alone"})  # fmt: skip
    write_notebook(tmp_path / "parts" / "train.ipynb", [
        ("step:fit", "mean = statistics.mean(clean)\nprint('mean', mean)"),
    ])  # fmt: skip
    return _reference(tmp_path / "root.ipynb", [
        ("notebook:prep", ""),
        ([], "scale = 10"),  # untagged after a reference: it joins the next step: cell
        ("step:report", "print('report', mean * scale, len(clean))"),
        ("notebook:train", ""),
    ], {0: "parts/prep.ipynb", 3: "parts/train.ipynb"})  # fmt: skip


def test_referenced_notebooks_become_steps_named_after_the_reference(tmp_path):
    notebook = load_notebook(_pipeline(tmp_path))
    assert [s.name for s in notebook.steps] == ["prep_load", "prep_clean", "report", "train_fit"]
    assert [s.display_name for s in notebook.steps] == [
        "prep-load", "prep-clean", "report", "train-fit",
    ]  # fmt: skip
    assert notebook.step("prep_clean").prev == ("prep_load",)  # prev: follows the rename
    load = notebook.step("prep_load").cells
    assert [c.source for c in load] == ["raw = [3, 1, 4, 1, 5]", "raw = raw + [9]"]
    assert all(c.origin == str(Path("parts") / "prep.ipynb") or c.origin.endswith("prep.ipynb")
               for c in load)  # fmt: skip
    # the untagged cell after the reference joins the next step: cell, in the root notebook
    report = notebook.step("report").cells
    assert [(c.source, c.origin) for c in report][0] == ("scale = 10", None)
    [prologue] = [c for c in notebook.cells if c.source == "import statistics"]
    assert prologue.role.value == "imports"  # the referenced notebook's imports run everywhere
    messages = " | ".join(n.message for n in notebook.notes)
    assert "kubeflow_notebook" in messages and "notebook:prep is" in messages
    assert "tagged skip" in messages  # its notes keep their notebook's name


def test_a_composed_pipeline_runs_locally_as_the_notebooks_ran(tmp_path, trace):
    (tmp_path / "parts").mkdir()
    write_notebook(tmp_path / "parts" / "prep.ipynb", [
        ("imports", "import statistics"),
        ("step:load", "raw = [3, 1, 4, 1, 5]"),
        ([], "raw = raw + [9]"),
        (["step:clean", "prev:load"], "clean = sorted(set(raw))"),
    ])  # fmt: skip
    root = _reference(tmp_path / "root.ipynb", [
        ("notebook:prep", ""),
        ([], "scale = 10"),
        ("step:report", "print('report', statistics.mean(clean) * scale, len(clean))"),
    ], {0: "parts/prep.ipynb"})  # fmt: skip
    flow = trace(root)
    report = flow.step("report")
    assert sorted((f.variable, f.producer) for f in report.inputs) == [("clean", "prep_clean")]
    assert all(c.origin.endswith("prep.ipynb") for c in flow.step("prep_load").cells)
    run = run_locally(flow, tmp_path / "runs")
    task = next(t for t in run.tasks if t.task == "report")
    assert "report 44.0 5" in "\n".join(task.log)  # mean(1, 3, 4, 5, 9) * 10, five values


@pytest.mark.parametrize(
    "cells, references, files, words",
    [
        ([("notebook:prep", "x = 1")], {0: "prep.ipynb"}, ["prep"], "holds code"),
        ([("notebook:prep", "")], {}, [], "no notebook_path"),
        ([("notebook:prep", "")], {0: "missing.ipynb"}, [], "does not exist"),
        ([("notebook:prep", ""), ([], "y = 2")], {0: "prep.ipynb"}, ["prep"], "none follows"),
        ([("notebook:me", "")], {0: "root.ipynb"}, [], "cycle of references"),
        ([("notebook:prep", ""), ("step:prep_a", "z = 3")], {0: "prep.ipynb"}, ["prep"],
         "both become|already has"),
        ([("notebook:prep", ""), (["notebook:prep", "step:x"], "")], {0: "prep.ipynb"},
         ["prep"], "cannot also be a step"),
    ],
)  # fmt: skip
def test_bad_references_are_located_errors(tmp_path, cells, references, files, words):
    for name in files:
        write_notebook(tmp_path / f"{name}.ipynb", [("step:a", "v = 1")])
    root = _reference(tmp_path / "root.ipynb", cells, references)
    with pytest.raises(KaleTraceError, match=words) as caught:
        load_notebook(root)
    assert caught.value.cell is not None and caught.value.fix


def test_a_cell_of_a_referenced_notebook_that_fails_is_named_in_its_own_notebook(tmp_path):
    write_notebook(tmp_path / "prep.ipynb", [("step:a", "v = 1"), ("step:b", "1 / 0")])
    root = _reference(tmp_path / "root.ipynb", [("notebook:prep", "")], {0: "prep.ipynb"})
    result = CliRunner().invoke(main, ["compile", str(root), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "prep.ipynb, cell 1 ('1 / 0'), step 'prep_b'" in result.output
    assert "ZeroDivisionError" in result.output
