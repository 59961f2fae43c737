"""Fuzzing the command line with notebooks, tags, metadata and parameter files.

Whatever comes in, `kale-trace compile` either compiles or says what is wrong (exit 1 or 2,
kale-trace's own message): never an internal error, never a Python traceback. The compile is
static (`--no-trace`), so each example runs the loader, codegen and the real KFP compiler.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kale_trace.cli import main

_TAGS = st.one_of(
    st.sampled_from([
        "imports", "functions", "skip", "parameters", "pipeline-parameters", "pipeline-metrics",
        "injected-parameters", "step:a", "step:b", "block:a;b", "block:", "step:", "prev:a",
        "prev:a;b", "prev:a:b", "prev:zz", "limit:cpu:1", "limit:memory:1Gi", "limit:gpu:1",
        "label:team:ml", "annotation:x:y", "secret:s:k:ENV", "cache:disabled", "retries:2",
        "report:false", "in:x", "out:y", "hide-input", "raises-exception", "image:python:3.11",
        "notebook:other",
    ]),
    st.text(max_size=12),
)  # fmt: skip
_SOURCES = st.one_of(
    st.sampled_from([
        "x = 1", "y = x + 1", "print(x)", "import os", "def f():\n    return 1", "z = f()",
        "rows = 10\nname = 'n'", "del x", "!echo hi", "%time w = 1", "x = (", "", "   ",
    ]),
    st.text(max_size=20),
)  # fmt: skip
_JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_METADATA = st.one_of(
    st.none(),
    _JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "pipeline_name": _JSON, "pipeline_description": _JSON, "experiment_name": _JSON,
            "docker_image": _JSON, "volumes": _JSON, "steps_defaults": _JSON, "timeout": _JSON,
            "security_context": _JSON, "enable_caching": _JSON, "katib_run": _JSON,
            "autosnapshot": _JSON, "unknown_key": _JSON,
        },
    ),
)  # fmt: skip
_VALUES_FILES = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(["rows: 5", "name: text", "x: &a [1]\ny: *a", "[1, 2]", "rows: [1, 2]"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(st.tuples(st.lists(_TAGS, max_size=3), _SOURCES), min_size=1, max_size=5),
    metadata=_METADATA,
    values=_VALUES_FILES,
)
def test_the_command_line_never_fails_with_an_internal_error(cells, metadata, values):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw = [{"cell_type": "code", "source": source, "metadata": {"tags": tags},
                "outputs": [], "execution_count": None} for tags, source in cells]  # fmt: skip
        notebook_metadata = {} if metadata is None else {"kubeflow_notebook": metadata}
        notebook = folder / "nb.ipynb"
        notebook.write_text(
            json.dumps({"cells": raw, "metadata": notebook_metadata, "nbformat": 4,
                        "nbformat_minor": 5})
        )  # fmt: skip
        arguments = ["compile", str(notebook), "-o", str(folder / "out"), "--no-trace"]
        if values is not None:
            (folder / "values.yaml").write_text(values, encoding="utf-8")
            arguments += ["-f", str(folder / "values.yaml")]
        result = CliRunner().invoke(main, arguments)
        event(f"exit {result.exit_code}")
        assert result.exit_code in (0, 1, 2), result.output
        assert "internal error" not in result.output, result.output
        assert "Traceback (most recent call last)" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
