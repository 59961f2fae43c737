"""The CLI contract: exit codes, clear errors without tracebacks, atomic outputs."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import read_json

CLI = [sys.executable, "-m", "kale_trace"]


def run(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_usage_errors_exit_2(tmp_path):
    assert run("compile").returncode == 2
    assert run("compile", str(tmp_path / "missing.ipynb")).returncode == 2
    assert run("frobnicate").returncode == 2


def test_bad_notebook_exits_1_with_a_message_and_no_output(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ not json")
    result = run("compile", str(bad), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "bad.ipynb" in result.stderr and "not JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.ipynb"]  # no staging folder left


def test_failed_compile_keeps_the_previous_output(notebook, tmp_path):
    good = notebook([("parameters", "n = 1"), ("step:a", "x = n")], name="good.ipynb")
    out = tmp_path / "out"
    assert run("compile", str(good), "-o", str(out), "--no-trace").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = notebook([("step:a", "raise RuntimeError('boom')")], name="good.ipynb")
    result = run("compile", str(broken), "-o", str(out))
    assert result.returncode == 1 and "boom" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_parameters_overrides_and_samples(notebook, tmp_path):
    path = notebook([("parameters", "rows = 10\nname = 'a'\nrate = 0.5"), ("step:a", "x = rows")])
    sample = tmp_path / "sample.yaml"
    sample.write_text("rows: 3\n")
    out = tmp_path / "out"
    result = run("compile", str(path), "-o", str(out), "-p", "name", "b c", "-p", "rate", "2",
                 "--sample-params", str(sample))  # fmt: skip
    assert result.returncode == 0, result.stderr
    params = {p["name"]: p for p in read_json(out / "dataflow.json")["parameters"]}
    assert params["rows"] == {"name": "rows", "type": "int", "default": 10, "sample": 3}
    assert params["name"]["default"] == "b c" and params["rate"]["default"] == 2.0
    bad = run("compile", str(path), "-o", str(out), "-p", "rows", "many")
    assert bad.returncode == 1 and "rows" in bad.stderr and "int" in bad.stderr
    unknown = run("compile", str(path), "-o", str(out), "-p", "nope", "1")
    assert unknown.returncode == 1 and "unknown parameter" in unknown.stderr


def test_no_trace_says_so(notebook, tmp_path):
    path = notebook([("step:a", "x = 1"), (["step:b", "prev:a"], "y = x")])
    result = run("compile", str(path), "-o", str(tmp_path / "out"), "--no-trace")
    assert result.returncode == 0, result.stderr
    assert "static analysis only" in result.stderr
    flow = read_json(tmp_path / "out" / "dataflow.json")
    assert flow["traced"] is False
    assert flow["steps"][1]["inputs"][0]["source"] == "ast"


def test_the_compiled_yaml_is_byte_identical_in_every_process(notebook, tmp_path):
    """KFP prints defaults in protobuf map order, which differs between processes."""
    config = '{"zeta": 1, "alpha": {"q": 1, "b": 2, "k": 3}, "c": [{"y": 1, "x": 2}], "m": 4}'
    path = notebook([("parameters", f"conf = {config}\nrate = 0.5"), ("step:a", "x = conf")])
    files = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = run("compile", str(path), "-o", str(out), "--no-trace", env=env)
        assert result.returncode == 0, result.stderr
        files.append((out / "nb.yaml").read_bytes())
    assert files[0] == files[1]
    header = files[0].decode().split("components:")[0]
    assert 'conf: str [Default: \'{"zeta": 1, "alpha": {"q": 1' in header  # JSON text
