"""Kale's and papermill's notebooks as their users wrote them: every form any release accepted.

Loader-level tests read the notebook only; the others trace it in a real kernel, compile it
with the real KFP compiler and, where the numbers matter, run it with KFP's local runner.
"""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from kale_trace.cli import main
from kale_trace.notebook.loader import load_notebook
from kale_trace.notebook.model import CellRole
from kale_trace.runners.local import run_locally


def _cells(nb, step):
    return [c.index for c in nb.step(step).cells]


def _printed(run, step: str) -> str:
    """What a local run's task printed (kfp.local indents the task's own lines)."""
    task = next(t for t in run.tasks if t.task == step.replace("_", "-"))
    return "\n".join(line.strip() for line in task.log)


# --- Reading the notebook: Kale's continuation rules -------------------------------------


def test_an_untagged_cell_after_skip_continues_the_last_real_step(notebook):
    nb = load_notebook(
        notebook(
            [
                ("step:a", "x = 1"),
                ("skip", "print(x)"),
                ([], "x = x + 1"),
                (["step:b", "prev:a"], "print('x is', x)"),
            ]
        )  # fmt: skip
    )
    assert _cells(nb, "a") == [0, 2] and _cells(nb, "b") == [3]
    assert any("cells 1 are tagged skip" in n.message for n in nb.notes)


def test_cells_before_the_first_tag_are_left_out_with_a_note(notebook):
    nb = load_notebook(
        notebook([([], "!pip install pandas"), ([], "!pip install sklearn"), ("step:a", "x = 1")])
    )
    assert [c.index for c in nb.cells] == [2]
    [note] = [n for n in nb.notes if n.warning]
    assert "cells 0, 1 come before the first tagged cell" in note.message and note.cell == 0


def test_untagged_cells_continue_imports_functions_parameters_and_metrics(notebook):
    nb = load_notebook(
        notebook(
            [
                ("imports", "import os"),
                ([], "import sys"),
                ("pipeline-parameters", "a = 1"),
                ([], "b = 2"),
                ("functions", "def f(): pass"),
                ([], "def g(): pass"),
                ("step:s", "x = f()"),
                ("pipeline-metrics", "x"),
                ([], "print(x)"),
            ]
        )  # fmt: skip
    )
    roles = {c.index: c.role for c in nb.cells}
    assert roles[1] is CellRole.IMPORTS and roles[3] is CellRole.PARAMETERS
    assert roles[5] is CellRole.FUNCTIONS and roles[8] is CellRole.METRICS
    assert [c.index for c in nb.prologue] == [0, 1, 4, 5]  # imports first, then functions
    assert [p.name for p in nb.parameters] == ["a", "b"]


def test_a_notebook_without_step_tags_is_one_step(notebook):
    path = notebook([("parameters", "msg = None"), ([], "#papermill_description=DESC\nprint(msg)")])
    nb = load_notebook(path)
    assert [s.name for s in nb.steps] == ["nb"] and _cells(nb, "nb") == [1]
    assert any("one step" in n.message for n in nb.notes)


def test_a_cell_in_two_steps_runs_in_both(notebook):
    nb = load_notebook(
        notebook(
            [
                ("block:a", "x = 1"),
                ("block:a;b", "loader = [x]"),
                ([], "n = len(loader)"),
                ("block:b", "m = len(loader)"),
            ]
        )  # fmt: skip
    )
    assert _cells(nb, "a") == [0, 1, 2] and _cells(nb, "b") == [1, 3]
    assert [(s.owner, [c.index for c in s.cells]) for s in nb.plan] == [
        ("a", [0, 1, 2]), ("b", [1, 3]),
    ]  # fmt: skip


def test_every_prev_form_and_an_empty_step_cell_carrying_prev(notebook):
    nb = load_notebook(
        notebook(
            [
                ("step:a", "x = 1"),
                ("step:b", "y = 1"),
                (["step:c", "prev:a;b"], "z = 1"),
                (["step:d", "prev:a:c"], "w = 1"),
                (["step:e", "prev:d"], ""),
                ([], "v = w"),
                (["step:", "prev:b"], "u = 1"),
            ]
        )  # fmt: skip
    )
    assert set(nb.dag.edges) == {
        ("a", "c"), ("b", "c"), ("a", "d"), ("c", "d"), ("d", "e"), ("b", "e"),
    }  # fmt: skip
    assert _cells(nb, "e") == [5, 6]  # the blank cell is not run; its prev: counts


def test_skip_and_special_tags_win_and_foreign_tags_are_left_alone(notebook):
    nb = load_notebook(
        notebook(
            [
                (["skip", "step:a", "prev:zz"], "print('skipped')"),
                (["imports", "step:a"], "import os"),
                (["functions", "prev:a"], "def f(): pass"),
                (["step:a", "hide-input", "in:x", "out:y", "report:true"], "x = 1"),
            ]
        )  # fmt: skip
    )
    assert [c.index for c in nb.prologue] == [1, 2] and _cells(nb, "a") == [3]
    assert nb.step("a").settings.report is True
    assert any("step:a ignored" in n.message for n in nb.notes)


def test_papermill_parameters_cells_may_hold_any_code(notebook):
    nb = load_notebook(
        notebook(
            [
                (
                    "parameters",
                    "import os\nrows = 10\nshape = (2, 3)\nname: str = 'x'\n"
                    "path = os.path.join('a', name)\nlr = 1e-3\nlr = float(lr)",
                ),
                ("step:a", "print(rows, shape, path)"),
            ]
        )  # fmt: skip
    )
    assert [(p.name, p.default) for p in nb.parameters] == [("rows", 10), ("name", "x")]
    assert nb.parameters_code
    assert any("'shape'" in n.message and "tuple" in n.message for n in nb.notes)


def test_every_kale_metadata_key_is_read_or_ignored_with_a_reason(notebook):
    metadata = {
        "pipeline_name": "kale-keys", "experiment": {"id": "new", "name": "exp"},
        "docker_image": "repo/image:1", "autosnapshot": True, "snapshot_volumes": True,
        "katib_run": True, "katib_metadata": {"parameters": []}, "abs_working_dir": "/home",
        "marshal_volume": True, "marshal_path": "/marshal", "kfp_host": "http://x",
        "timeout": 600, "security_context": {"runAsUser": 1000},
        "steps_defaults": {"labels": {"team": "ml"}, "limits": {"cpu": "2"}},
        "volumes": [
            {"type": "clone", "name": "data", "mount_point": "/home/jovyan/data"},
            {"type": "pvc", "name": "raw-data", "mount_point": "/raw", "expose_as_env_var": True},
        ],
        "brand_new_key": 1,
    }  # fmt: skip
    nb = load_notebook(notebook([("step:a", "x = 1")], metadata=metadata))
    config = nb.config
    assert config.experiment == "exp" and config.base_image == "repo/image:1"
    assert config.timeout == 600 and config.security_context == (("run_as_user", 1000),)
    assert nb.step("a").settings.labels == {"team": "ml"}
    assert nb.step("a").settings.limits == {"cpu": "2"}
    assert [(v.name, v.env_var) for v in config.volumes] == [("raw-data", "KALE_VOLUME_RAW_DATA")]
    warnings = " | ".join(n.message for n in nb.notes if n.warning)
    for words in ("katib_run", "autosnapshot, snapshot_volumes", "'clone'", "brand_new_key"):
        assert words in warnings


def test_kale_metadata_reaches_the_compiled_pipeline(notebook, compile_nb):
    metadata = {
        "timeout": 600, "security_context": {"run_as_user": 1000},
        "volumes": [
            {"type": "pvc", "name": "raw-data", "mount_point": "/raw", "expose_as_env_var": True},
            {"type": "new_pvc", "name": "scratch", "mount_point": "/s", "size": 1,
             "size_type": "Gi", "annotations": [{"key": "owner", "value": "me"}]},
        ],
    }  # fmt: skip
    compiled = compile_nb(notebook([("step:a", "x = 1")], metadata=metadata), trace=False)
    docs = list(yaml.safe_load_all(compiled.yaml_path.read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-a"]
    assert platform["activeDeadlineSeconds"] == "600"
    assert platform["securityContext"]["runAsUser"] == "1000"
    assert {m["mountPath"] for m in platform["pvcMount"]} == {"/raw", "/s"}
    env = docs[0]["deploymentSpec"]["executors"]["exec-a"]["container"]["env"]
    assert {"name": "KALE_VOLUME_RAW_DATA", "value": "/raw"} in env
    source = compiled.python_path.read_text()
    assert "annotations={'owner': 'me'}" in source.replace('"', "'")


# --- Real kernel, real pipeline ------------------------------------------------------------


def test_skip_continuation_gives_the_notebooks_value_in_the_pipeline(notebook, tmp_path):
    path = notebook([
        ("step:a", "x = 1"), ("skip", "print(x)"), ([], "x = x + 1"),
        (["step:b", "prev:a"], "print('x is', x)"),
    ])  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    [log] = (out / "runs").glob("*/run.log")
    assert "x is 2" in log.read_text() and "x is 1" not in log.read_text()
    assert "cells 1 are tagged skip" in result.output


def test_kale_order_functions_below_first_use_and_a_cell_in_two_steps(notebook, trace, tmp_path):
    path = notebook([
        ("step:load", "data = twice(21)"),
        ("block:load;report", "label = f'value {data}'"),
        (["step:report", "prev:load"], "print(label, data)"),
        ("functions", "def twice(n):\n    return 2 * n"),
    ])  # fmt: skip
    flow = trace(path)
    assert {f.variable for f in flow.step("report").inputs} == {"data"}
    run = run_locally(flow, tmp_path / "runs")
    assert "value 42 42" in _printed(run, "report")


def test_data_flowing_both_ways_between_split_steps_is_a_located_error(notebook, trace):
    import pytest

    from kale_trace.errors import KaleTraceError

    path = notebook(
        [("step:a", "data = 1"), ("step:b", "model = data + 1"), ("step:a", "print(model)")]
    )
    with pytest.raises(KaleTraceError) as raised:
        trace(path)
    error = raised.value
    assert "need each other's data" in error.message
    assert "'model' from step 'b'" in error.message and "'data'" in error.message
    assert "(cells 0, 2) are split around step 'b'" in error.fix


def test_a_module_imported_again_travels_as_an_import(notebook, trace):
    flow = trace(
        notebook(
            [
                ("step:a", "import json\nx = 1"),
                (["step:b", "prev:a"], "import json\ny = 2"),
                (["step:c", "prev:b"], "print(json.dumps([x, y]))"),
            ]
        )  # fmt: skip
    )
    c = flow.step("c")
    assert c.imports == {"json": "import json"}
    assert {(f.variable, f.producer) for f in c.inputs} == {("x", "a"), ("y", "b")}


SEEDED = [
    ("imports", "import numpy as np, random\nnp.random.seed(0); random.seed(0)\nimport sklearn"),
    ("step:a", "x = np.random.rand()\nprint('x =', round(x, 4))"),
    (["step:b", "prev:a"], "y = np.random.rand()\nprint('y =', round(y, 4))"),
    (["step:c", "prev:a"], "np.random.seed(5)\nz = np.random.rand()\nprint('z =', round(z, 4))"),
    (["step:d", "prev:a"], "w = random.random()\nprint('w =', round(w, 4))"),
]


def test_a_notebook_seeded_once_draws_the_notebooks_numbers_in_every_step(
    notebook, trace, tmp_path
):
    flow = trace(notebook(SEEDED))
    assert flow.warnings == []  # exact, so nothing to warn about (and sklearn's env is its own)
    assert [(f.variable, f.producer) for f in flow.step("b").inputs] == [("numpy.random", "a")]
    assert flow.step("c").inputs == [] and flow.step("d").inputs == []  # c seeds; d: prologue
    run = run_locally(flow, tmp_path / "runs")
    printed = {step: _printed(run, step) for step in "abcd"}
    assert "x = 0.5488" in printed["a"] and "y = 0.7152" in printed["b"]
    assert "z = 0.222" in printed["c"] and "w = 0.8444" in printed["d"]


def test_environment_changes_are_warned_by_name_and_imports_are_not(notebook, trace):
    flow = trace(
        notebook(
            [
                ("step:a", "import os, sklearn\nos.environ['MY_FLAG'] = os.getcwd()"),
                (["step:b", "prev:a"], "print(os.environ.get('MY_FLAG'))"),
            ]
        )  # fmt: skip
    )
    [warning] = [w for w in flow.warnings if w["variable"] == "environ"]
    assert "MY_FLAG" in warning["message"] and "KMP" not in warning["message"]


def test_parameters_stay_exact_and_papermill_code_runs_in_every_step(notebook, trace, tmp_path):
    path = notebook([
        ("parameters", "sizes = [1, 2]\nbig = 9007199254740993\n"
                       "print('params ready')\nlabel = f'n{len(sizes)}'"),
        ("step:a", "print(type(sizes[0]).__name__, big, label)"),
    ])  # fmt: skip
    flow = trace(path)
    assert {p.name: p.kfp_type for p in flow.parameters} == {"sizes": "str", "big": "str"}
    run = run_locally(flow, tmp_path / "runs", arguments={"sizes": [5, 6, 7]})
    printed = _printed(run, "a")
    # papermill's semantics: code in the cell sees the defaults, the run's values come after
    assert "params ready" in printed and "int 9007199254740993 n2" in printed
