"""A library that is installed but does not import is the environment's fault, not the notebook's.

The real case: pyarrow 26 is built for numpy 2 and refuses numpy 1.26 on import. These tests
put a pyarrow on the import path that fails the same way (with its own dist-info, so it is
"installed"), in the dry-run kernel and in the round-trip check's fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kale_trace.errors import KaleTraceError
from kale_trace.marshal import ARROW
from kale_trace.marshal.environment import environment_error, import_problem
from kale_trace.marshal.roundtrip import emitted_functions

NUMPY = np.__version__
REFUSAL = f"pyarrow requires NumPy 2.0 or newer, found {NUMPY}"


def broken_pyarrow(root: Path, error: str = REFUSAL) -> Path:
    """A pyarrow 26.0.1 that is installed and raises `error` when imported, as a bad build does."""
    (root / "pyarrow").mkdir(parents=True)
    (root / "pyarrow" / "__init__.py").write_text(f"raise ImportError({error!r})\n")
    info = root / "pyarrow-26.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyarrow\nVersion: 26.0.1\n")
    (info / "top_level.txt").write_text("pyarrow\n")
    return root


def expected_command() -> str:
    """What the fix must tell for this numpy: an older pyarrow under 1.x, a newer one under 2."""
    return "pip install 'pyarrow<26'" if NUMPY.startswith("1.") else "pip install --upgrade"


def test_a_marshaller_library_that_does_not_import_in_the_dry_run(
    notebook, trace, tmp_path, monkeypatch
):
    monkeypatch.setenv("PYTHONPATH", str(broken_pyarrow(tmp_path / "site")))
    path = notebook([
        ("imports", "import pandas as pd"),
        ("step:load", "df = pd.DataFrame({'x': [1.0, 2.0], 'y': [3, 4]})"),
        (["step:use", "prev:load"], "total = float(df.x.sum())"),
    ])  # fmt: skip
    with pytest.raises(KaleTraceError) as caught:
        trace(path)
    error = caught.value
    assert error.message.startswith(
        f"your environment's pyarrow 26.0.1 cannot be imported with numpy {NUMPY}: "
        f"ImportError: {REFUSAL}; "
    )
    assert "'df'" in error.message and "'load'" in error.message and "'use'" in error.message
    assert expected_command() in error.fix and "merge" not in error.render()
    assert error.step is None and error.notebook == str(path)
    assert str(tmp_path / "site" / "pyarrow" / "__init__.py") in error.details


def test_the_fresh_process_names_the_library_that_does_not_import(tmp_path):
    artifact = types.SimpleNamespace(path=str(tmp_path / "frame"), metadata={})
    functions = emitted_functions(ARROW)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    functions["_kale_write_artifact"](artifact, ARROW.name, frame, functions["_kale_save_arrow"])
    item = {"id": "0", "marshaller": "arrow", "path": artifact.path, "metadata": artifact.metadata}
    request, results = tmp_path / "request.json", tmp_path / "results.json"
    request.write_text(json.dumps({"items": [item], "results": str(results)}))
    code = f"import kale_trace.marshal.roundtrip as r; r.load_values({str(request)!r})"
    site = broken_pyarrow(tmp_path / "site")
    done = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(site)}, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    problem = json.loads(results.read_text())["0"]["environment"]
    assert problem["distribution"] == "pyarrow" and problem["version"] == "26.0.1"
    assert problem["error"] == f"ImportError: {REFUSAL}" and problem["numpy"] == NUMPY
    assert problem["origin"] == str(site / "pyarrow" / "__init__.py")


def test_libraries_that_import_are_no_problem():
    cache: dict = {}
    assert import_problem(("pandas", "numpy", "cloudpickle"), cache) is None
    assert cache == {"pandas": None, "numpy": None, "cloudpickle": None}


def _problem(**changes: object) -> dict:
    problem = {
        "module": "pyarrow", "distribution": "pyarrow", "version": "26.0.1", "numpy": "1.26.4",
        "error": "ImportError: numpy.core.multiarray failed to import", "python": "python3",
        "origin": "/site/pyarrow/__init__.py", "traceback": "Traceback ...",
    }  # fmt: skip
    return {**problem, **changes}


@pytest.mark.parametrize(
    ("changes", "message", "fix"),
    [
        ({}, "pyarrow 26.0.1 cannot be imported with numpy 1.26.4: ImportError: numpy.core",
         "(pip install 'pyarrow<26')"),
        ({"version": "1.13.1", "distribution": "scipy"}, "scipy 1.13.1 cannot be imported with",
         "(pip install 'scipy<1.13')"),
        ({"version": "14.0.2", "numpy": "2.4.6",
          "error": "AttributeError: _ARRAY_API not found"},
         "pyarrow 14.0.2 cannot be imported with numpy 2.4.6: AttributeError: _ARRAY_API",
         "(pip install --upgrade 'pyarrow')"),
        ({"error": "ImportError: libarrow.so.2600: cannot open shared object file"},
         "pyarrow 26.0.1 cannot be imported: ImportError: libarrow.so.2600",
         "pip install --force-reinstall 'pyarrow==26.0.1'"),
        ({"version": None, "error": "ModuleNotFoundError: No module named 'pyarrow'"},
         "pyarrow is not installed in this Python environment", "pip install pyarrow"),
    ],
)  # fmt: skip
def test_environment_errors_name_the_library_and_how_to_fix_it(changes, message, fix):
    error = environment_error(_problem(**changes), "the arrow format needs it", "nb.ipynb")
    assert message in error.message and error.message.endswith("; the arrow format needs it")
    assert fix in error.fix and error.notebook == "nb.ipynb" and "/site/pyarrow" in error.details
