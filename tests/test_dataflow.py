"""Producer resolution from real dry runs: exact edges, and the edges that must not appear."""

from __future__ import annotations

import pytest
from conftest import edges

from kale_trace.errors import KaleTraceError


def test_in_place_mutation_makes_the_mutating_step_the_producer(notebook, trace):
    path = notebook(
        [
            ("imports", "import pandas as pd"),
            ("step:a", "df = pd.DataFrame({'x': [1.0, None, 3.0]})\nlst = [1]"),
            (["step:d", "prev:a"], "before = len(df)"),
            (["step:b", "prev:d"], "df['x'] = df['x'].fillna(0.0)\nlst.append(2)"),
            (["step:c", "prev:b"], "after = len(df) + len(lst)"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {
        ("a", "d", "df"),
        ("a", "b", "df"),
        ("a", "b", "lst"),
        ("b", "c", "df"),
        ("b", "c", "lst"),
    }
    assert flow.step("c").inputs[0].source == "trace"


def test_augmented_assignment_is_input_and_output(notebook, trace):
    path = notebook(
        [
            ("imports", "import numpy as np"),
            ("step:a", "total = 1\narr = np.zeros(3)\nlst = []"),
            (["step:b", "prev:a"], "total += 10\narr += 1\nlst += [1]"),
            (["step:c", "prev:b"], "out = (total, arr.sum(), lst)"),
        ]
    )
    flow = trace(path)
    for name in ("total", "arr", "lst"):
        assert ("a", "b", name) in edges(flow)
        assert ("b", "c", name) in edges(flow)


def test_deleted_names_are_not_outputs(notebook, trace):
    path = notebook(
        [
            ("step:a", "tmp = 1\nkeep = 2"),
            (["step:b", "prev:a"], "x = tmp + keep\ndel tmp"),
            (["step:c", "prev:b"], "y = keep\nif False:\n    print(tmp)"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "b", "tmp"), ("a", "b", "keep"), ("a", "c", "keep")}


def test_global_inside_a_function_and_its_source(notebook, trace):
    path = notebook(
        [
            ("functions", "def g():\n    global a\n    a = 99"),
            ("step:a", "a = 1"),
            (["step:b", "prev:a"], "g()"),
            (["step:c", "prev:b"], "b = a + 1"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("b", "c", "a")}


def test_functions_are_re_emitted_with_their_globals_as_inputs(notebook, trace):
    path = notebook(
        [
            (
                "step:a",
                "threshold = 2\ndef score(x):\n    return x > threshold\nkey = lambda r: r * 2",
            ),
            (["step:c", "prev:a"], "result = [score(v) for v in [1, 3]]\ndoubled = key(4)"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "c", "threshold")}
    step = flow.step("c")
    assert "def score(x):" in step.definitions["score"]
    assert step.definitions["key"].startswith("key = lambda")


def test_classes_are_re_emitted_and_instances_marshalled(notebook, trace):
    path = notebook(
        [
            ("step:a", "class Model:\n    def predict(self, x):\n        return x + 1"),
            (["step:b", "prev:a"], "m = Model()"),
            (["step:c", "prev:b"], "y = m.predict(1)"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("b", "c", "m")}
    assert "class Model" in flow.step("b").definitions["Model"]
    # c never names the class: cloudpickle carries a __main__ class by value with `m`.
    assert "Model" not in flow.step("c").definitions


def test_modules_and_star_imports_are_re_imported_not_marshalled(notebook, trace):
    path = notebook(
        [
            ("step:a", "import json as j\nfrom math import *"),
            (["step:b", "prev:a"], "w = sqrt(16.0) + len(j.dumps([1]))"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == set()
    assert flow.step("b").imports == {"j": "import json as j", "sqrt": "from math import sqrt"}


def test_exec_and_globals_writes_are_seen(notebook, trace):
    path = notebook(
        [
            ("step:a", "exec('made = 5')\nglobals()['other'] = 6"),
            (["step:b", "prev:a"], "z = made + other"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "b", "made"), ("a", "b", "other")}


def test_generator_crossing_a_step_is_an_error_naming_both_steps(notebook, trace):
    path = notebook(
        [
            ("step:a", "gen = (x * x for x in range(3))"),
            (["step:b", "prev:a"], "first = next(gen)"),
        ]
    )
    with pytest.raises(KaleTraceError) as raised:
        trace(path)
    message = raised.value.render()
    assert "gen" in message and "'a'" in message and "'b'" in message
    assert "merge" in raised.value.fix


def test_loop_variables_are_not_inputs_unless_read(notebook, trace):
    path = notebook(
        [
            ("step:a", "acc = []\nfor row in [1, 2]:\n    acc.append(row)"),
            (["step:b", "prev:a"], "total = sum(acc)\nsquares = [row * row for row in acc]"),
        ]
    )
    assert edges(trace(path)) == {("a", "b", "acc")}


def test_reused_names_are_resolved_per_version(notebook, trace):
    path = notebook(
        [
            ("step:a", "df = 1"),
            (["step:b", "prev:a"], "first = df"),
            (["step:c", "prev:b"], "df = 'other'"),
            (["step:d", "prev:c"], "second = df"),
            (["step:e", "prev:d"], "df = 3\nthird = df"),
        ]
    )
    assert edges(trace(path)) == {("a", "b", "df"), ("c", "d", "df")}


def test_branch_not_taken_becomes_an_optional_ast_edge(notebook, trace):
    path = notebook(
        [
            ("parameters", "flag = False"),
            ("step:a", "base = 1\nif flag:\n    extra = 2"),
            (["step:b", "prev:a"], "total = base + (extra if flag else 0)"),
        ]
    )
    flow = trace(path)
    by_var = {f.variable: f for f in flow.step("b").inputs}
    assert by_var["base"].source == "trace"
    assert by_var["extra"].source == "ast"
    assert flow.step("a").parameters == ["flag"] and flow.step("b").parameters == ["flag"]


def test_missing_prev_adds_the_dependency_and_warns(notebook, trace):
    path = notebook(
        [
            ("imports", "import random"),
            ("step:a", "x = 1"),
            ("step:b", "y = x + 1"),
        ]
    )
    flow = trace(path)
    assert flow.step("b").after == ["a"]
    assert [(w["step"], w["variable"]) for w in flow.warnings] == [("b", "x")]


def test_magic_cells_are_traced(notebook, trace):
    path = notebook(
        [
            ("step:a", "%time z = 2 * 3"),
            (["step:b", "prev:a"], "w = z + 1"),
        ]
    )
    assert edges(trace(path)) == {("a", "b", "z")}


def test_a_failing_cell_names_step_cell_and_traceback(notebook, trace):
    path = notebook(
        [
            ("step:a", "x = 1"),
            (["step:b", "prev:a"], "def f():\n    raise ValueError('bad value here')\nf()"),
        ]
    )
    with pytest.raises(KaleTraceError) as raised:
        trace(path)
    error = raised.value
    assert error.step == "b" and error.cell == 1
    assert "ValueError" in error.message and "bad value here" in error.details


def test_writing_through_a_view_received_from_another_step_is_an_error(notebook, trace):
    path = notebook(
        [
            ("imports", "import numpy as np"),
            ("step:a", "arr = np.zeros(4)\nview = arr[:2]"),
            (["step:b", "prev:a"], "view += 1"),  # `arr` changes too, but b never receives it
            (["step:c", "prev:b"], "total = arr.sum()"),
        ]
    )
    with pytest.raises(KaleTraceError) as raised:
        trace(path)
    assert raised.value.step == "b" and "view" in raised.value.message
    assert "arr" in raised.value.message


def test_a_view_made_in_the_writing_step_marks_its_base_written(notebook, trace):
    path = notebook(
        [
            ("imports", "import numpy as np"),
            ("step:a", "arr = np.zeros(4)"),
            (["step:b", "prev:a"], "view = arr[:2]\nview += 1"),
            (["step:c", "prev:b"], "total = arr.sum()"),
        ]
    )
    assert edges(trace(path)) == {("a", "b", "arr"), ("b", "c", "arr")}


def test_global_rng_state_travels_and_environment_changes_are_warned(notebook, trace):
    path = notebook(
        [
            ("imports", "import numpy as np"),
            ("step:a", "np.random.seed(0)"),
            (["step:b", "prev:a"], "x = np.random.rand()"),
            (["step:c", "prev:b"], "import os\nos.environ['KALE_TRACE_TEST'] = os.getcwd()"),
        ]
    )
    flow = trace(path)
    assert {(w["step"], w["variable"]) for w in flow.warnings} == {("c", "environ")}
    assert [(f.producer, f.variable) for f in flow.step("b").inputs] == [("a", "numpy.random")]
