"""Settings a step inherits in the notebook travel to the pipeline's fresh processes (#19).

pandas sizes tables one way in a Jupyter kernel and another in a plain Python process, and
cells set options that later cells print with; each step starts with the settings the
notebook had at that point, so it prints what the notebook printed.
"""

from __future__ import annotations

import nbformat
from conftest import read_json
from nbclient import NotebookClient

from kale_trace.cli import main
from kale_trace.runners.local import run_locally

PRINTS = (
    "print(pd.get_option('display.max_columns'), pd.get_option('display.max_rows'))\n"
    "print(wide)\nprint(np.array([1 / 3]), decimal.Decimal(1) / 7)"
)
CELLS = [
    ("imports", "import decimal\nimport numpy as np\nimport pandas as pd"),
    ("step:a", "wide = pd.DataFrame({f'c{i}': range(70) for i in range(30)})\n"
               "pd.set_option('display.max_rows', 7)\nnp.set_printoptions(precision=3)\n"
               "decimal.getcontext().prec = 6"),
    (["step:b", "prev:a"], PRINTS),
    ("step:c", "import json\nprint(json.dumps([1]))"),
]  # fmt: skip


def _notebook_prints(path) -> str:
    """What the last cell prints when Jupyter runs the notebook top to bottom."""
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, kernel_name="python3").execute()
    [cell] = [c for c in nb.cells if c.source == PRINTS]
    return "".join(o.get("text", "") for o in cell.outputs)


def test_a_step_prints_tables_and_numbers_as_the_notebook_did(notebook, trace, tmp_path):
    path = notebook(CELLS)
    flow = trace(path)
    assert flow.step("b").settings == {
        "pandas": {"display.max_columns": 20, "display.max_rows": 7},
        "numpy": {"precision": 3},
        "decimal": {"prec": 6},
    }
    run = run_locally(flow, tmp_path / "runs")
    task = next(t for t in run.tasks if t.task == "b")
    expected = _notebook_prints(path)
    assert "20 7" in expected and "..." in expected  # the kernel's own table layout
    printed = "\n".join(line.rstrip() for line in task.log)
    assert all(line.rstrip() in printed for line in expected.splitlines())


def test_settings_are_listed_per_step_in_dataflow_json_and_the_report(notebook, tmp_path):
    path = notebook(CELLS)
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    steps = {s["name"]: s for s in read_json(tmp_path / "out" / "dataflow.json")["steps"]}
    assert steps["b"]["settings"]["numpy"] == {"precision": 3}
    for report in ("report.md", "report.html"):
        text = (tmp_path / "out" / report).read_text()
        assert "pandas display.max_rows = 7" in text and "numpy precision = 3" in text
    source = next((tmp_path / "out").glob("*.py")).read_text()
    assert source.count("    _kale_settings(") == 3  # a call in each step
    # a starts right after the imports cell: only the kernel's own pandas default differs
    assert '_kale_settings({"pandas": {"display.max_columns": 20}})' in source


def test_a_step_that_imports_pandas_itself_prints_the_kernels_table(notebook, trace, tmp_path):
    wide = "import pandas as pd\nprint(pd.DataFrame({f'c{i}': [i] for i in range(30)}))"
    path = notebook([("step:a", "x = 1"), (["step:b", "prev:a"], wide)])
    flow = trace(path)
    assert flow.step("b").settings == {"pandas": {"display.max_columns": 20}}
    run = run_locally(flow, tmp_path / "runs")
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, kernel_name="python3").execute()
    expected = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "..." in expected  # 30 columns: the kernel shows 20 of them
    task = next(t for t in run.tasks if t.task == "b")
    printed = "\n".join(line.rstrip() for line in task.log)
    assert all(line.rstrip() in printed for line in expected.splitlines())


def test_sizes_in_the_report_are_what_a_step_writes_and_what_arrays_hold(notebook, tmp_path):
    path = notebook([
        ("imports", "import numpy as np\nfrom sklearn.ensemble import RandomForestClassifier"),
        ("step:fit", "X = np.arange(400.0).reshape(100, 4)\ny = (X[:, 0] > 150).astype(int)\n"
                     "model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)"),
        (["step:use", "prev:fit"], "print(model.predict(X[:3]))"),
    ])  # fmt: skip
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    flow = read_json(tmp_path / "out" / "dataflow.json")
    inputs = {i["name"]: i for s in flow["steps"] for i in s["inputs"]}
    model, array = inputs["model"], inputs["X"]
    assert "size_bytes" not in model or model["size_bytes"] is None  # not a shallow 56 B
    assert model["saved_bytes"] > 2000  # five fitted trees
    assert array["size_bytes"] == 400 * 8 and array["saved_bytes"] >= 400 * 8
    report = (tmp_path / "out" / "report.md").read_text()
    assert "3.12 KiB in memory" in report and " saved" in report
