"""The tag language, metadata and the step DAG: every tag and every refusal."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.loader import load_notebook
from kale_trace.notebook.model import CellRole, SecretRef
from kale_trace.notebook.tags import normalise_step_name, parse_tags


def test_every_role_tag():
    assert parse_tags(["imports"]).role is CellRole.IMPORTS
    assert parse_tags(["functions"]).role is CellRole.FUNCTIONS
    assert parse_tags(["pipeline-parameters"]).role is CellRole.PARAMETERS
    assert parse_tags(["parameters"]).role is CellRole.PARAMETERS
    assert parse_tags(["pipeline-metrics"]).role is CellRole.METRICS
    assert parse_tags(["skip"]).skip
    assert parse_tags(["injected-parameters"]).injected
    assert parse_tags(["raises-exception", "in:x", "out:y"]).role is None


def test_step_block_prev_and_settings():
    tags = parse_tags([
        "block:train", "prev:load", "prev:clean", "limit:nvidia.com/gpu:1", "limit:memory:2Gi",
        "image:repo/img:1.0", "label:team:ml", "annotation:owner:me", "secret:creds:/etc/c",
        "cache:disabled", "retries:3", "report:false",
    ])  # fmt: skip
    assert tags.role is CellRole.STEP and tags.steps == ["train"]
    assert tags.prev == ["load", "clean"]
    assert tags.limits == {"nvidia.com/gpu": "1", "memory": "2Gi"}
    assert tags.image == "repo/img:1.0"
    assert tags.labels == {"team": "ml"} and tags.annotations == {"owner": "me"}
    assert tags.secrets == [SecretRef("creds", mount_path="/etc/c")]
    assert tags.cache is False and tags.retries == 3 and tags.report is False
    assert parse_tags(["step:"]).role is None  # an empty step tag acts as untagged
    assert parse_tags(["functions", "prev:x"]).role is CellRole.FUNCTIONS


def test_every_kale_release_multi_name_form():
    assert parse_tags(["block:a;b"]).steps == ["a", "b"]  # Kale 0.x: a cell in two steps
    assert parse_tags(["step:a", "step:b"]).steps == ["a", "b"]
    assert parse_tags(["step:a", "prev:x;y"]).prev == ["x", "y"]
    assert parse_tags(["step:a", "prev:x:y"]).prev == ["x", "y"]  # the 2019 form


def test_special_and_skip_tags_win_as_in_kale():
    assert parse_tags(["skip", "step:a", "prev:b", "limit:cpu:lots"]).skip
    assert parse_tags(["step:a", "skip"]).skip
    both = parse_tags(["imports", "step:a"])
    assert both.role is CellRole.IMPORTS and both.ignored == ["step:a"]
    assert parse_tags(["hide-input", "remove-cell", "step:a"]).steps == ["a"]
    assert parse_tags(["step:a", "mytag"]).unknown == ["mytag"]


@pytest.mark.parametrize(
    "tags",
    [["bogus:x"], ["limit:cpu"], ["cache:maybe"], ["retries:x"], ["retries:²"], ["prev:"],
     ["label:novalue"], ["image:"], ["report:maybe"], ["step:a", "stpe:b"],
     ["image:repo/x\n:1"], ["label:team\n:ml"], ["secret:bad name:k:ENV"], ["limit:gpu:1\n2"]],
)  # fmt: skip
def test_bad_tags_are_refused_with_a_fix(tags):
    with pytest.raises(KaleTraceError) as raised:
        parse_tags(tags)
    assert raised.value.fix


def test_step_names_are_normalised_or_refused():
    assert normalise_step_name("data-loading") == "data_loading"
    assert normalise_step_name("Train Model!") == "train_model"
    assert normalise_step_name("1st") == "step_1st"
    assert normalise_step_name("class") == "class_step"
    for bad in ("---", "", "x" * 64):
        with pytest.raises(KaleTraceError):
            normalise_step_name(bad)


def test_loads_steps_prologue_and_dag(notebook):
    path = notebook([
        ("imports", "import os"),
        (None, "# markdown"),
        ("pipeline-parameters", "rows = 5"),
        ("step:load-data", "x = 1"),
        ([], "y = 2"),
        (["step:train", "prev:load-data"], "z = x"),
        ("skip", "print('not run')"),
        ([], "z = z + 1"),  # continues train, the last real step (Kale)
        ("step:load-data", "w = 3"),
        ("pipeline-metrics", "z"),
    ], metadata={"pipeline_name": "My Pipeline_1"})  # fmt: skip
    nb = load_notebook(path)
    assert [s.name for s in nb.steps] == ["load_data", "train"]
    assert nb.step("load_data").display_name == "load-data"
    # The metrics cell runs last, in the step of the last step cell.
    assert [c.index for c in nb.step("load_data").cells] == [3, 4, 8, 9]
    assert [c.index for c in nb.step("train").cells] == [5, 7]
    assert list(nb.dag.edges) == [("load_data", "train")]
    assert [c.index for c in nb.prologue] == [0]
    assert [c.index for c in nb.parameter_cells] == [2]
    assert [(p.name, p.default) for p in nb.parameters] == [("rows", 5)]
    assert nb.pipeline_name == "my-pipeline-1"


def _error(path) -> KaleTraceError:
    with pytest.raises(KaleTraceError) as raised:
        load_notebook(path)
    assert raised.value.notebook and raised.value.fix, raised.value.render()
    return raised.value


def test_file_errors(tmp_path):
    (tmp_path / "a.ipynb").write_text("not json")
    assert "not JSON" in _error(tmp_path / "a.ipynb").message
    (tmp_path / "b.ipynb").write_text(json.dumps({"hello": 1}))
    assert "not a notebook" in _error(tmp_path / "b.ipynb").message
    (tmp_path / "c.ipynb").write_text(json.dumps({"nbformat": 3, "worksheets": []}))
    assert "nbconvert" in _error(tmp_path / "c.ipynb").fix


@pytest.mark.parametrize(
    ("cells", "cell", "words"),
    [
        ([(None, "# only markdown")], None, "no code cells"),
        ([("imports", "import os")], None, "no cell is tagged"),
        ([("step:a", "x = 1"), ("unknown:tag", "y")], 1, "unknown tag"),
        ([("step:---", "x = 1")], 0, "cannot be made"),
        ([("step:a", "x"), (["step:b", "prev:nope"], "y")], 1, "does not exist"),
        ([("parameters", "a = (1"), ("step:s", "x")], 0, "not valid Python"),
        ([("x:1", "x = 1")], 0, "unknown tag"),
    ],
)  # fmt: skip
def test_notebook_errors_name_the_cell(notebook, cells, cell, words):
    error = _error(notebook(cells))
    assert words in error.message
    assert error.cell == cell


def test_cycles_are_refused(notebook):
    error = _error(notebook([(["step:a", "prev:b"], "x"), (["step:b", "prev:a"], "y")]))
    assert "cycle" in error.message


def test_unknown_metadata_is_a_warning_not_an_error(notebook):
    nb = load_notebook(notebook([("step:a", "x")], metadata={"pipeline_nam": "typo"}))
    assert any("pipeline_nam" in n.message and n.warning for n in nb.notes)


tag_text = st.one_of(
    st.sampled_from(["imports", "functions", "skip", "parameters", "pipeline-metrics",
                     "step:a", "step:b", "block:c", "prev:a", "prev:zz", "limit:cpu:1"]),
    st.text(max_size=12),
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.lists(tag_text, max_size=3), st.text(max_size=30)), max_size=6))
def test_fuzz_loader_gives_a_notebook_or_our_error(tmp_path, cells):
    # Written as raw JSON: files on disk need not pass nbformat's validation.
    path = tmp_path / "fuzz.ipynb"
    raw = [{"cell_type": "code", "source": s, "metadata": {"tags": t}, "outputs": [],
            "execution_count": None} for t, s in cells]  # fmt: skip
    path.write_text(json.dumps({"cells": raw, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    try:
        load_notebook(path)
    except KaleTraceError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "x.ipynb"
    path.write_bytes(data)
    with pytest.raises(KaleTraceError):
        load_notebook(path)
