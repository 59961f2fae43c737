"""The benchmark command runs (no timing is asserted: figures live in BENCHMARKS.md)."""

import subprocess
import sys

from conftest import ROOT


def test_benchmarks_quick_mode_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "fingerprint float64" in result.stdout and "dry run" in result.stdout
    assert "compile --no-trace" in result.stdout and "local pipeline" in result.stdout
    for family in ("(json)", "(npy)", "(arrow)", "(npz)", "(joblib)", "(cloudpickle)"):
        assert family in result.stdout
    assert "pandas pickle" in result.stdout and "targets" in result.stdout
