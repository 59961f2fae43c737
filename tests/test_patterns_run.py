"""Tricky notebook patterns, run for real as local pipelines: same numbers as the notebook."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
from conftest import read_json
from nbclient import NotebookClient

PATTERNS = [
    ("imports", "import numpy as np"),
    ("functions", "def bump(values):\n    values.append(len(values))\n\n"
                  "def set_global():\n    global counter\n    counter = 99"),
    ("step:make", "arr = np.arange(6.0)\nitems = [1]\nthreshold = 2\n"
                  "def above(x):\n    return x > threshold\nkey = lambda v: v * 10\n"
                  "class Box:\n    def __init__(self, v):\n        self.v = v\n"
                  "exec('made = 7')\nfrom math import *\ncounter = 0"),
    (["step:mutate", "prev:make"],
     "view = arr[:3]\nview += 1\nbump(items)\nset_global()\nbox = Box(sqrt(16.0))\n"
     "total = 1\ntotal += 10"),
    (["step:use", "prev:mutate"],
     "score = float(arr.sum()) + len(items) + counter + box.v\n"
     "flags = sum(above(v) for v in items)\nscaled = key(made) + total"),
    ("pipeline-metrics", "score\nflags\nscaled"),
]  # fmt: skip


def test_patterns_pipeline_reproduces_the_notebook(notebook, tmp_path):
    path = notebook(PATTERNS)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "kale_trace", "run", str(path), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [executor_output] = (out / "runs").glob("*/outputs/*/use/executor_output.json")
    artifacts = read_json(executor_output)["artifacts"]
    metrics = artifacts["metrics"]["artifacts"][0]["metadata"]

    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell("import json\nprint(json.dumps([score, flags, scaled]))")
    )
    NotebookClient(nb, kernel_name="python3").execute()
    expected = json.loads(nb.cells[-1].outputs[0]["text"])
    assert [metrics["score"], metrics["flags"], metrics["scaled"]] == expected

    flow = read_json(out / "dataflow.json")
    use = next(s for s in flow["steps"] if s["name"] == "use")
    assert {(i["from"], i["name"]) for i in use["inputs"]} == {
        ("mutate", "arr"), ("mutate", "items"), ("mutate", "counter"), ("mutate", "box"),
        ("mutate", "total"), ("make", "threshold"), ("make", "made"),
    }  # fmt: skip
    assert set(use["definitions"]) == {"above", "key"}
