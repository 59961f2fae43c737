"""The tag language, metadata and the step DAG: every tag and every refusal."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.loader import load_notebook
from kale_trace.notebook.model import CellRole
from kale_trace.notebook.tags import normalise_step_name, parse_tags


def test_every_role_tag():
    assert parse_tags(["imports"]).role is CellRole.IMPORTS
    assert parse_tags(["functions"]).role is CellRole.FUNCTIONS
    assert parse_tags(["pipeline-parameters"]).role is CellRole.PARAMETERS
    assert parse_tags(["parameters"]).role is CellRole.PARAMETERS
    assert parse_tags(["pipeline-metrics"]).role is CellRole.METRICS
    assert parse_tags(["skip"]).role is CellRole.SKIP
    assert parse_tags(["injected-parameters"]).role is CellRole.INJECTED
    assert parse_tags(["raises-exception", "in:x", "out:y"]).role is None


def test_step_block_prev_and_settings():
    tags = parse_tags([
        "block:train", "prev:load", "prev:clean", "limit:nvidia.com/gpu:1", "limit:memory:2Gi",
        "image:repo/img:1.0", "label:team:ml", "annotation:owner:me", "secret:creds:/etc/c",
        "cache:disabled", "retries:3",
    ])  # fmt: skip
    assert tags.role is CellRole.STEP and tags.step == "train"
    assert tags.prev == ["load", "clean"]
    assert tags.limits == {"nvidia.com/gpu": "1", "memory": "2Gi"}
    assert tags.image == "repo/img:1.0"
    assert tags.labels == {"team": "ml"} and tags.annotations == {"owner": "me"}
    assert tags.secrets == ["creds:/etc/c"] and tags.cache is False and tags.retries == 3
    assert parse_tags(["step:"]).role is None  # an empty step tag acts as untagged
    assert parse_tags(["functions", "prev:x"]).role is CellRole.FUNCTIONS


@pytest.mark.parametrize(
    "tags",
    [["bogus"], ["imports", "step:a"], ["step:a", "step:b"], ["limit:cpu"], ["cache:maybe"],
     ["retries:x"], ["prev:"], ["label:novalue"], ["image:"], ["skip", "prev:a"]],
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
        ("step:load-data", "w = 3"),
        ("pipeline-metrics", "z"),
    ], metadata={"pipeline_name": "My Pipeline_1"})  # fmt: skip
    nb = load_notebook(path)
    assert [s.name for s in nb.steps] == ["load_data", "train"]
    assert nb.step("load_data").display_name == "load-data"
    assert [c.index for c in nb.step("load_data").cells] == [3, 4, 7]
    assert list(nb.dag.edges) == [("load_data", "train")]
    assert [c.index for c in nb.prologue] == [0]
    assert nb.parameters_cell.index == 2
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
        ([("step:a", "x = 1"), ("unknown-tag", "y")], 1, "unknown tag"),
        ([("step:---", "x = 1")], 0, "cannot be made"),
        ([("step:a", "x"), (["step:b", "prev:nope"], "y")], 1, "does not exist"),
        ([("parameters", "a = 1"), ("pipeline-parameters", "b = 2"), ("step:s", "x")], 1, "two"),
        ([("parameters", "import os\na = 1"), ("step:s", "x")], 0, "only assign"),
        ([("parameters", "a = (1"), ("step:s", "x")], 0, "not valid Python"),
        ([("x = 1", "x = 1")], 0, "unknown tag"),
        ([([], "x = 1"), ("step:s", "y")], 0, "belongs to no step"),
    ],
)  # fmt: skip
def test_notebook_errors_name_the_cell(notebook, cells, cell, words):
    error = _error(notebook(cells))
    assert words in error.message
    assert error.cell == cell


def test_cycles_are_refused(notebook):
    error = _error(notebook([(["step:a", "prev:b"], "x"), (["step:b", "prev:a"], "y")]))
    assert "cycle" in error.message


def test_unknown_metadata_is_refused(notebook):
    error = _error(notebook([("step:a", "x")], metadata={"pipeline_nam": "typo"}))
    assert "pipeline_nam" in error.message


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
