"""Reliability: the user's files, names KFP or Python would refuse, state that would be lost.

Each test drives what a user drives (the compiler, a real kernel, KFP's compiler and, where a
value could go wrong at run time, KFP's local runner).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import write_notebook

from kale_trace.cli import main
from kale_trace.errors import KaleTraceError
from kale_trace.runners.local import run_locally


def _printed(run, step: str) -> str:
    task = next(t for t in run.tasks if t.task == step.replace("_", "-"))
    return "\n".join(line.strip() for line in task.log)


# --- 3: the dry run leaves the user's files as they were ----------------------------------


def test_the_dry_run_puts_back_the_files_it_changed(notebook, trace, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("first\n")
    (tmp_path / "old.txt").write_text("keep me\n")
    path = notebook([
        ("step:a", "open('data.txt', 'a').write('second\\n')\nimport os\nos.remove('old.txt')"),
        (["step:b", "prev:a"], "print('lines', len(open('data.txt').readlines()))"),
    ])  # fmt: skip
    flow = trace(path)
    assert data.read_text() == "first\n" and (tmp_path / "old.txt").read_text() == "keep me\n"
    [note] = [n for n in flow.notes if "put them back" in n["message"]]
    assert "data.txt" in note["message"] and "old.txt" in note["message"]
    run = run_locally(flow, tmp_path / "runs")
    assert "lines 2" in _printed(run, "b")  # what a fresh notebook run prints


# --- 4, 5: names KFP or the emitted runtime would refuse ----------------------------------


@pytest.mark.parametrize("name", ["2024-analysis.ipynb", "del.ipynb", "class.ipynb"])
def test_notebook_file_names_that_are_not_identifiers_compile(tmp_path, name):
    path = write_notebook(tmp_path / name, [("step:a", "x = 1"), (["step:b", "prev:a"], "y = x")])
    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("pipeline_name", [123, "class", "x" * 300])
def test_pipeline_names_that_are_not_identifiers_or_too_long_compile(
    notebook, tmp_path, pipeline_name
):
    path = notebook([("step:a", "x = 1")], metadata={"pipeline_name": pipeline_name})
    result = CliRunner().invoke(
        main, ["compile", str(path), "-o", str(tmp_path / "o"), "--no-trace"]
    )
    assert result.exit_code == 0, result.output
    assert all(len(p.name) < 120 for p in (tmp_path / "o").iterdir())


def test_names_kfp_and_builtins_would_refuse_cross_steps_exactly(notebook, trace, tmp_path):
    path = notebook([
        ("parameters", "len = 3\n_rows = 2"),
        ("step:a", "_private = 1\nλ = 2\ndonnées = 3\nglobals()['a b'] = 4\nopen = 5\n"
                   "str = 'six'\ncompile = [7]\nisinstance = {'k': 8}\nbytes = b'9'"),
        (["step:b", "prev:a"], "print('got', _private, λ, données, globals()['a b'], open, str,"
                               " compile, isinstance, bytes, len, _rows)"),
    ])  # fmt: skip
    flow = trace(path)
    run = run_locally(flow, tmp_path / "runs")
    assert "got 1 2 3 4 5 six [7] {'k': 8} b'9' 3 2" in _printed(run, "b")


# --- 6: values keep their type -----------------------------------------------------------


def test_a_tuple_in_the_parameters_cell_is_code_with_a_note(notebook, trace):
    flow = trace(notebook([("parameters", "shape = (2, 3)\nn = 1"), ("step:a", "x = shape")]))
    assert [p.name for p in flow.parameters] == ["n"]
    assert any("'shape'" in n.message for n in flow.notebook.notes)


# --- 8: validation gaps ------------------------------------------------------------------


def test_tags_with_commas_and_empty_tags_do_not_break_the_dry_run(tmp_path, trace):
    import json

    cells = [(["step:a", "my,tag", "", "  "], "x = 1"), (["step:b", "prev:a"], "y = x")]
    raw = [{"cell_type": "code", "source": source, "metadata": {"tags": tags}, "outputs": [],
            "execution_count": None} for tags, source in cells]  # fmt: skip
    path = tmp_path / "nb.ipynb"  # raw JSON: nbformat's own writer refuses a comma in a tag
    path.write_text(json.dumps({"cells": raw, "metadata": {}, "nbformat": 4, "nbformat_minor": 4}))
    flow = trace(path)
    assert [(f.producer, f.variable) for f in flow.step("b").inputs] == [("a", "x")]


# --- 9: cycles through data edges --------------------------------------------------------


def test_prev_pointing_forward_against_the_data_is_a_located_error(notebook, trace):
    path = notebook([(["step:a", "prev:b"], "x = 1"), ("step:b", "y = x + 1")])
    with pytest.raises(KaleTraceError) as raised:
        trace(path)
    assert "need each other's data" in raised.value.message
    assert "runs after (prev:)" in raised.value.message and raised.value.fix


# --- 14: del ----------------------------------------------------------------------------


def test_a_step_that_deletes_a_name_receives_it(notebook, trace, tmp_path):
    flow = trace(
        notebook(
            [
                ("step:a", "tmp = [1, 2]\nkeep = 3"),
                (["step:b", "prev:a"], "total = sum(tmp)\ndel tmp\nprint('total', total, keep)"),
            ]
        )  # fmt: skip
    )
    assert {f.variable for f in flow.step("b").inputs} == {"tmp", "keep"}
    assert "total 3 3" in _printed(run_locally(flow, tmp_path / "runs"), "b")


# --- 15: state that would be lost ---------------------------------------------------------


def test_state_a_fresh_step_would_lose_is_carried_or_warned(notebook, trace, tmp_path):
    (tmp_path / "helper.py").write_text("X = 1\n")
    flow = trace(
        notebook(
            [
                ("imports", "import helper, builtins"),
                (
                    "step:a",
                    "class C:\n    counter = 0\n"
                    "def make():\n    n = [0]\n    def bump():\n        n[0] += 1\n"
                    "        return n[0]\n    return bump\nbump = make()",
                ),
                (["step:b", "prev:a"], "C.counter += 1\nhelper.X = 5\nbump()\nbuiltins.MAGIC = 1"),
                (["step:c", "prev:b"], "print('state', C.counter, helper.X, bump())"),
            ]
        )  # fmt: skip
    )
    warned = {(w["step"], w["variable"]) for w in flow.warnings}
    assert {("c", "C"), ("c", "helper"), ("b", "builtins")} <= warned
    # The closure's cell changed in b: it travels from b, with its count.
    assert ("b", "bump") in {(f.producer, f.variable) for f in flow.step("c").inputs}
    assert "state 0 1 2" in _printed(run_locally(flow, tmp_path / "runs"), "c")


# --- 10: a value whose type changes between the dry run and a run --------------------------


def test_a_value_of_another_type_than_in_the_dry_run_is_named_by_the_step(
    notebook, trace, tmp_path
):
    flow = trace(
        notebook(
            [
                ("parameters", "n = 1"),
                ("step:a", "x = 1 if n == 1 else 'text'"),
                (["step:b", "prev:a"], "print(x)"),
            ]
        )  # fmt: skip
    )
    with pytest.raises(KaleTraceError) as raised:
        run_locally(flow, tmp_path / "runs", arguments={"n": 2})
    assert raised.value.step == "a"
    assert "'x' was of type int in the dry run, but this run made it a str" in raised.value.details


# --- 7: what KFP passes on a command line fits Linux's 128 KB argument limit --------------


def test_a_step_bigger_than_a_command_line_argument_runs(notebook, trace, tmp_path):
    rows = "\n".join(
        f"row_{i} = {i} * 3  # generated code, a long line {i:06d}" for i in range(2500)
    )
    path = notebook([
        ("step:a", rows + "\ntotal = sum(v for k, v in globals().items() if k.startswith('row_'))"),
        (["step:b", "prev:a"], "print('total', total)"),
    ])  # fmt: skip
    assert path.stat().st_size > 128 * 1024
    run = run_locally(trace(path), tmp_path / "runs")
    assert f"total {sum(i * 3 for i in range(2500))}" in _printed(run, "b")


@pytest.mark.parametrize(
    "cells, words",
    [
        ([("step:a", "blob = 'a small step'")], None),
        ([("step:a", "blob = " + repr(__import__("os").urandom(150_000).hex()) + "\nn = len(blob)"),
          (["step:b", "prev:a"], "print(n)")], "the step's code is"),
        ([("parameters", f"text = {'x' * 200_000!r}"), ("step:a", "print(len(text))")],
         "parameter 'text' is 195 KB"),
        ([("step:a", "\n".join(f"v{i} = {i}" for i in range(1200))),
          (["step:b", "prev:a"], "print(sum([" + ", ".join(f"v{i}" for i in range(1200)) + "]))")],
         "the step has 1202 inputs and outputs"),  # 1200 values, the cells' outputs, the report
    ],
)  # fmt: skip
def test_what_cannot_fit_a_command_line_is_refused_at_compile_time(tmp_path, cells, words):
    path = write_notebook(tmp_path / "big.ipynb", cells)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(out)])
    if words is None:  # a small step compiles: the check refuses only what cannot start
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert words in result.output and "big.ipynb, step 'a'" in result.output
    assert "128 KB" in result.output and "fix:" in result.output
    assert not out.exists()  # nothing half-written
