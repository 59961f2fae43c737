"""What each step installs: its own imports pinned to the dry run's versions, or what the
user says (--requirements), or nothing (--no-install)."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from kale_trace.cli import main
from kale_trace.codegen.packages import read_requirements
from kale_trace.errors import KaleTraceError

pytest.importorskip("sklearn")
SKLEARN_PIN = f"scikit-learn=={metadata.version('scikit-learn')}"
CELLS = [
    ("imports", "import json"),
    (
        "step:train",
        "from sklearn.linear_model import LinearRegression\nmodel = LinearRegression()",
    ),
    (["step:report", "prev:train"], "summary = json.dumps({'ok': True})"),
]


def _packages(python_path: Path) -> dict[str, list[str] | None]:
    """Each component's packages_to_install, read from the generated module's decorators."""
    found: dict[str, list[str] | None] = {}
    for node in ast.parse(python_path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "dsl.component":
                keywords = {k.arg: k.value for k in decorator.keywords}
                value = keywords.get("packages_to_install")
                found[node.name] = ast.literal_eval(value) if value is not None else None
    return found


def test_a_step_installs_the_distributions_it_imports_pinned(notebook, compile_nb):
    compiled = compile_nb(notebook(CELLS))
    packages = _packages(compiled.python_path)
    assert SKLEARN_PIN in (packages["train"] or [])
    assert not any(p.startswith("scikit-learn") for p in packages["report"] or [])
    assert SKLEARN_PIN in compiled.yaml_path.read_text(encoding="utf-8")  # in the pip command


def test_no_install_installs_nothing(notebook, compile_nb):
    compiled = compile_nb(notebook(CELLS), trace=False, install=False)
    assert _packages(compiled.python_path) == {"train": None, "report": None}
    assert "scikit-learn" not in compiled.yaml_path.read_text(encoding="utf-8")


def test_requirements_file_replaces_the_detected_pins_in_every_step(notebook, compile_nb, tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# pinned by the platform team\npandas>=2  # data\n\nrequests==2.32.3\n"
        'tomli; python_version < "3.11"\n',
        encoding="utf-8",
    )
    requirements = read_requirements(path)
    assert requirements == ("pandas>=2", "requests==2.32.3", 'tomli; python_version < "3.11"')
    compiled = compile_nb(notebook(CELLS), trace=False, requirements=requirements)
    assert _packages(compiled.python_path) == {
        "train": list(requirements),
        "report": list(requirements),
    }


@pytest.mark.parametrize("bad", ["scikit-learn==", "-r other.txt", "pandas>=2 numpy", "näme"])
def test_a_bad_requirement_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "requirements.txt"
    path.write_text(f"numpy==2.0\n{bad}\n", encoding="utf-8")
    with pytest.raises(KaleTraceError) as raised:
        read_requirements(path)
    assert f"{path}, line 2" in raised.value.message and raised.value.fix


def test_cli_flags_reach_compile_and_refuse_each_other(notebook, tmp_path):
    path = notebook(CELLS)
    requirements = tmp_path / "req.txt"
    requirements.write_text("requests==2.32.3\n", encoding="utf-8")
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["compile", str(path), "-o", str(out), "--no-trace"]
    result = runner.invoke(main, [*args, "--requirements", str(requirements)])
    assert result.exit_code == 0, result.output
    assert _packages(out / "nb.py") == {
        "train": ["requests==2.32.3"],
        "report": ["requests==2.32.3"],
    }
    result = runner.invoke(main, [*args, "--no-install"])
    assert result.exit_code == 0, result.output
    assert _packages(out / "nb.py") == {"train": None, "report": None}
    both = runner.invoke(main, [*args, "--no-install", "--requirements", str(requirements)])
    assert both.exit_code == 2 and "exclude each other" in both.output
    requirements.write_text("requests==\n", encoding="utf-8")
    bad = runner.invoke(main, [*args, "--requirements", str(requirements)])
    assert bad.exit_code == 1 and "line 1" in bad.output
