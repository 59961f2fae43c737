"""End to end, for real: a kernel dry run, the KFP compiler, and kfp.local running the steps."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
from conftest import EXAMPLE, read_json
from nbclient import NotebookClient

CLI = [sys.executable, "-m", "kale_trace.cli"]


def plain_notebook_values(path: Path, names: list[str]) -> dict:
    """Run the notebook top to bottom as Jupyter would, and read final values."""
    nb = nbformat.read(str(path), as_version=4)
    probe = f"import json as _j\nprint(_j.dumps({{n: globals()[n] for n in {names!r}}}))"
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return json.loads(nb.cells[-1].outputs[0]["text"])


def metrics_of(run_outputs: Path, task: str) -> dict:
    [executor_output] = run_outputs.glob(f"*/{task}/executor_output.json")
    artifacts = read_json(executor_output)["artifacts"]
    return artifacts["metrics"]["artifacts"][0]["metadata"]


def test_example_runs_as_a_local_pipeline_and_matches_the_notebook(tmp_path):
    outdir = tmp_path / "out"
    result = subprocess.run(
        [*CLI, "run", str(EXAMPLE), "-o", str(outdir),
         "--sample-params", str(EXAMPLE.parent / "sample-params.yaml")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "[5/5] evaluate: success" in result.stderr
    [run_dir] = (outdir / "runs").iterdir()
    pipeline_metrics = metrics_of(run_dir / "outputs", "evaluate")
    notebook = plain_notebook_values(EXAMPLE, ["logreg_accuracy", "forest_accuracy"])
    assert pipeline_metrics == notebook
    # The output notebook shows what the steps printed; its metrics cell shows the metric.
    output = nbformat.read(str(run_dir / "breast_cancer.ipynb"), as_version=4)
    by_tags = {tuple(c.metadata.get("tags", [])): c for c in output.cells if c.cell_type == "code"}
    [shape] = by_tags[("step:load-data",)].outputs
    assert shape.output_type == "stream" and shape.text.startswith("(")
    [metric] = by_tags[("pipeline-metrics",)].outputs
    assert float(metric.data["text/plain"]) == pipeline_metrics["forest_accuracy"]
    assert (run_dir / "reports" / "load_data.html").is_file()

    flow = read_json(outdir / "dataflow.json")
    steps = {s["name"]: s for s in flow["steps"]}
    assert list(steps) == ["load_data", "prepare", "train_logreg", "train_forest", "evaluate"]
    assert steps["evaluate"]["after"] == ["train_logreg", "train_forest"]  # the fan-in
    assert steps["train_forest"]["inputs"] == steps["train_logreg"]["inputs"]  # the fan-out
    assert flow["warnings"] == []
    params = {p["name"]: p for p in flow["parameters"]}
    assert params["n_estimators"] == {
        "name": "n_estimators", "type": "int", "default": 100, "sample": 20,
    }  # fmt: skip
    # The sample value changes only the dry run: the compiled default is the notebook's.
    compiled = (outdir / "breast-cancer.yaml").read_text()
    assert "defaultValue: 100.0" in compiled and "defaultValue: 20" not in compiled


def test_compile_is_byte_identical_across_runs(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for outdir in (first, second):
        result = subprocess.run(
            [*CLI, "compile", str(EXAMPLE), "-o", str(outdir)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    for name in ("breast-cancer.py", "breast-cancer.yaml"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_generated_code_is_readable_and_formatted(tmp_path, compile_nb):
    compiled = compile_nb(EXAMPLE, tmp_path / "out")
    source = compiled.python_path.read_text()
    # Each step's own code is there as written in the notebook.
    nb = nbformat.read(str(EXAMPLE), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "step:prepare" in cell.metadata.get("tags", []):
            for line in cell.source.splitlines():
                assert line.replace("\\", "\\\\") in source
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--diff", str(compiled.python_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    # Each component holds only the marshalling code its own ports use.
    tree = ast.parse(source)
    components = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    defined = {
        name: {n.name for n in ast.walk(function) if isinstance(n, ast.FunctionDef)}
        for name, function in components.items()
    }
    assert "_kale_save_arrow" in defined["load_data"]
    assert not {"_kale_load_arrow", "_kale_read_artifact"} & defined["load_data"]
    assert {"_kale_load_arrow", "_kale_read_artifact", "_kale_save_npy"} <= defined["prepare"]
    assert "_kale_save_arrow" not in defined["prepare"]
    assert not {"_kale_write_artifact", "_kale_save_joblib"} & defined["evaluate"]


def test_a_failing_step_is_named_with_its_own_traceback(notebook, tmp_path):
    path = notebook(
        [
            ("parameters", "fail = False"),
            ("step:first", "x = 1"),
            (
                ["step:second", "prev:first"],
                "if fail:\n    raise ValueError('the real cause')\ny = x",
            ),
        ]
    )
    result = subprocess.run(
        [*CLI, "run", str(path), "-o", str(tmp_path / "out"), "-p", "fail", "true",
         "--sample-params", str(_yaml(tmp_path, "fail: false"))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert "step 'second'" in result.stderr
    assert "ValueError: the real cause" in result.stderr
    assert "raise ValueError('the real cause')" in result.stderr  # the cell's own line
    assert "Traceback" in result.stderr and "kfp/dsl/executor" not in result.stderr
    assert "\x1b[" not in result.stderr.replace("\x1b[31m", "").replace("\x1b[0m", "")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sample.yaml"
    path.write_text(text)
    return path


def test_hostile_names_and_values_cannot_inject_code(tmp_path, compile_nb):
    from conftest import write_notebook

    hostile = '"""\\nimport os\'; x = """'
    path = write_notebook(
        tmp_path / 'evil """ \'name\\.ipynb',
        [
            ("parameters", f"text = {hostile!r}\nitems = ['a\"', \"b'''\"]"),
            ('step:load"""x', f"value = text + {hostile!r}"),
            (["step:use", 'prev:load"""x'], "out = value * 2"),
        ],
        metadata={"pipeline_description": hostile},
    )
    compiled = compile_nb(path, tmp_path / "out")
    source = compiled.python_path.read_text()
    module = compile(source, "generated", "exec")  # it parses
    names = {c.co_name for c in module.co_consts if hasattr(c, "co_name")}
    assert {"load_x", "use", "pipeline"} <= names
    import ast

    tree = ast.parse(source)
    pipeline = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "pipeline")
    defaults = [ast.literal_eval(d) for d in pipeline.args.defaults]
    assert defaults == [hostile, json.dumps(['a"', "b'''"])]  # a list travels as JSON text
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == [
        "load_x", "use", "pipeline",
    ]  # fmt: skip
