"""The bad-input catalogue (docs/errors.md), through the real command line.

Every case must exit 1 with a message naming the notebook and the cell or step, a fix, no
Python traceback, and no output folder, whole or half-written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_notebook

from kale_trace.cli import main

OK = [("step:a", "x = 1")]


def _nb(tmp_path: Path, cells, name: str = "nb.ipynb") -> Path:
    return write_notebook(tmp_path / name, cells)


def _raw(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nb.ipynb"
    path.write_text(text)
    return path


def _code_only(tmp_path: Path) -> Path:
    path = _nb(tmp_path, [(None, "# just words")])
    return path


CASES = {
    "not JSON": (lambda t: _raw(t, "{ nope"), [], ["not JSON"], None),
    "not a notebook": (lambda t: _raw(t, json.dumps([1, 2])), [], ["not a notebook"], None),
    "nbformat 3": (
        lambda t: _raw(t, json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": []})),
        [], ["format 3", "nbconvert"], None,
    ),
    "no code cells": (_code_only, [], ["no code cells"], None),
    "no steps": (lambda t: _nb(t, [("imports", "import os")]), [], ["no cell is tagged"], None),
    "unknown tag": (lambda t: _nb(t, [*OK, ("stpe:b", "y = 2")]), [], ["unknown tag"], "cell 1"),
    "bad step name": (lambda t: _nb(t, [("step:!!!", "x = 1")]), [], ["cannot be made"], "cell 0"),
    "prev to an unknown step": (
        lambda t: _nb(t, [*OK, (["step:b", "prev:nope"], "y = 2")]), [], ["does not exist"],
        "cell 1",
    ),
    "a cycle": (
        lambda t: _nb(t, [(["step:a", "prev:b"], "x = 1"), (["step:b", "prev:a"], "y = 2")]),
        [], ["cycle"], None,
    ),
    "parameters file not YAML": (
        lambda t: _nb(t, [("parameters", "a = 1"), *OK]), ["-f", "{bad"], ["YAML"], None,
    ),
    "a parameters file with YAML aliases": (
        lambda t: _nb(t, [("parameters", "a = [1]"), *OK]), ["-f", "x: &a [1, 2]\na: *a\n"],
        ["an alias (*a)", "no anchors or aliases"], None,
    ),
    "data flowing both ways between steps": (
        lambda t: _nb(t, [
            ("step:a", "data = 1"), ("step:b", "model = data + 1"), ("step:a", "print(model)"),
        ]),
        [], ["need each other's data", "'model' from step 'b'", "(cells 0, 2)"], "step 'b'",
    ),
    "an imports cell that uses what a step makes": (
        lambda t: _nb(t, [("step:a", "rows = 3"), ("functions", "limit = rows * 2")]),
        [], ["NameError", "made by step 'a'"], "cell 1",
    ),
    "sample file naming an unknown parameter": (
        lambda t: _nb(t, [("parameters", "a = 1"), *OK]), ["--sample-params", "b: 2"],
        ["unknown parameter(s): b"], None,
    ),
    "-p of the wrong type": (
        lambda t: _nb(t, [("parameters", "a = 1"), *OK]), ["-p", "a", "many"], ["'a'", "int"],
        None,
    ),
    "a cell that raises": (
        lambda t: _nb(t, [*OK, (["step:b", "prev:a"], "def f():\n    return 1 / 0\ny = f()")]),
        [], ["ZeroDivisionError", "return 1 / 0"], "step 'b'",
    ),
    "the kernel exits (os._exit)": (
        lambda t: _nb(t, [*OK, (["step:b", "prev:a"], "import os\nos._exit(3)")]),
        [], ["kernel died"], "step 'b'",
    ),
    "the kernel is killed (as by the out-of-memory killer)": (
        lambda t: _nb(t, [*OK, (["step:b", "prev:a"], "import os, signal\n"
                                                       "os.kill(os.getpid(), signal.SIGKILL)")]),
        [], ["kernel died", "out of memory"], "step 'b'",
    ),
    "a magic that needs the notebook's kernel": (
        lambda t: _nb(t, [*OK, (["step:b", "prev:a"], "%connect_info")]),
        [], ["%connect_info cannot run in a pipeline step", "a step has none"], "step 'b'",
    ),
    "an interactive matplotlib backend": (
        lambda t: _nb(t, [("step:a", "%matplotlib widget\nx = 1")]),
        [], ["%matplotlib widget cannot run", "%matplotlib inline"], "cell 0",
    ),
    "a cell over --cell-timeout": (
        lambda t: _nb(t, [*OK, (["step:b", "prev:a"], "import time\ntime.sleep(60)")]),
        ["--cell-timeout", "1"], ["did not finish within 1"], "step 'b'",
    ),
}  # fmt: skip


def _materialise(tmp_path: Path, extra: list[str]) -> list[str]:
    """Options whose value is file content become a file."""
    args = list(extra)
    for flag in ("-f", "--sample-params"):
        if flag in args:
            at = args.index(flag) + 1
            path = tmp_path / f"values{at}.yaml"
            path.write_text(args[at])
            args[at] = str(path)
    return args


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_exits_1_naming_notebook_place_and_fix(tmp_path, case):
    make, extra, words, place = CASES[case]
    path = make(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["compile", str(path), "-o", str(out), *_materialise(tmp_path, extra)]
    )
    message = result.output
    assert result.exit_code == 1, message
    assert path.name in message, message
    for word in words:
        assert word in message, message
    if place:
        assert place in message, message
    assert "fix:" in message, message
    # the cell's own traceback (IPython's "Cell In[...]"), never kale-trace's
    assert "Traceback (most recent call last)" not in message or "Cell In[" in message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
