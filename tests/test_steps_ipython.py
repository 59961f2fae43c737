"""Steps behave like notebook cells (IPython semantics) and show what they printed: for real,
a kernel dry run, the KFP compiler and kfp.local running the steps (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import write_notebook
from nbclient import NotebookClient
from test_report import CHROMIUM, Chromium

from kale_trace.errors import KaleTraceError

CLI = [sys.executable, "-m", "kale_trace.cli"]

MAGIC_CELLS = [
    ("imports", "import pandas as pd\nimport matplotlib.pyplot as plt"),
    ("step:Load-Data", "%%time\nv = list(range(10))"),
    ([], "!echo hello"),
    ([], "files = !ls *.ipynb"),
    ([], "%time s = sum(v)"),
    (["step:write", "prev:Load-Data"], "%%writefile helper.py\ndef double(x):\n    return 2 * x\n"),
    (["step:use", "prev:write"], "import helper\nd = helper.double(s)"),
    ([], "%%capture out\nprint('captured <b>')"),
    ([], "captured = out.stdout\nplt.plot(v)\nplt.show()"),
    ([], "df = pd.DataFrame({'a': v, '<script>': [x * x for x in v]})\ndf"),
    ([], "import json\nprint(json.dumps({'s': s, 'd': d, 'files': files, 'captured': captured}))"),
]
PLOT, TABLE, VALUES = 8, 9, 10  # cell indices


def _jupyter_outputs(path: Path) -> list[list[dict]]:
    """Run the notebook top to bottom as Jupyter would: every cell's outputs."""
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return [cell.get("outputs", []) for cell in nb.cells]


def _types(outputs: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    return [(o["output_type"], tuple(sorted(o.get("data", {})))) for o in outputs]


@pytest.fixture(scope="module")
def magic_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("magics")
    (folder / "nb").mkdir()
    path = write_notebook(folder / "nb" / "magics.ipynb", MAGIC_CELLS)
    jupyter = _jupyter_outputs(path)
    outdir = folder / "out"
    result = subprocess.run(
        [*CLI, "run", str(path), "-o", str(outdir)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr + result.stdout
    [run_dir] = (outdir / "runs").iterdir()
    return {"jupyter": jupyter, "run_dir": run_dir, "stdout": result.stdout, "path": path}


def test_magics_run_in_steps_and_values_equal_the_notebooks(magic_run: dict):
    run_dir, jupyter = magic_run["run_dir"], magic_run["jupyter"]
    [output_path] = run_dir.glob("*.ipynb")
    assert output_path.name == "magics.ipynb"
    produced = nbformat.read(str(output_path), as_version=4)
    nbformat.validate(produced)
    cells = [c.get("outputs", []) for c in produced.cells]
    [values] = [json.loads(o["text"]) for o in cells[VALUES] if o["output_type"] == "stream"]
    [expected] = [json.loads(o["text"]) for o in jupyter[VALUES] if o["output_type"] == "stream"]
    assert values == expected == {
        "s": 45, "d": 90, "files": ["magics.ipynb"], "captured": "captured <b>\n",
    }  # fmt: skip
    # Every cell shows the kinds of output Jupyter stored for it, in notebook order.
    assert [_types(c) for c in cells] == [_types(c) for c in jupyter]
    assert (
        cells[2] == jupyter[2] == [{"output_type": "stream", "name": "stdout", "text": "hello\r\n"}]
    )
    assert cells[1][0]["text"].startswith("CPU times:")  # %%time's own lines
    [plot] = [o for o in cells[PLOT] if o["output_type"] == "display_data"]
    assert plot["data"]["image/png"].startswith("iVBORw0KGgo")  # a PNG, base64
    [table] = cells[TABLE]
    assert table["output_type"] == "execute_result"
    assert table["data"]["text/html"] == jupyter[TABLE][0]["data"]["text/html"]
    assert [c.execution_count for c in produced.cells] == list(range(1, len(MAGIC_CELLS) + 1))


def test_the_console_shows_states_notebook_and_reports(magic_run: dict):
    stdout, run_dir = magic_run["stdout"], magic_run["run_dir"]
    for step, name in (("Load-Data", "load_data"), ("write", "write"), ("use", "use")):
        assert any(
            line.startswith(f"  {step} ") and " success " in line for line in stdout.splitlines()
        )
        assert f"report:    {step}: {run_dir / 'reports' / f'{name}.html'}" in stdout
    assert f"notebook:  {run_dir / 'magics.ipynb'}" in stdout


_REPORT_FACTS = """(() => ({
  doctype: document.doctype && document.doctype.name,
  scripts: document.querySelectorAll('script').length,
  handlers: [...document.querySelectorAll('*')].filter(
      e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
  external: [...document.querySelectorAll('[src]:not([src^="data:"]), link[href]')].length,
  pngs: document.querySelectorAll('img[src^="data:image/png"]').length,
  tables: document.querySelectorAll('table.dataframe').length,
  headers: [...document.querySelectorAll('table.dataframe th')].map(th => th.textContent),
  text: document.body.innerText,
}))()"""


def test_step_reports_are_valid_escaped_html_in_chromium(
    magic_run: dict, tmp_path_factory: pytest.TempPathFactory
):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (see .ci/run)")
    browser = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        report = magic_run["run_dir"] / "reports" / "use.html"
        browser.open(report, 1200, 900)
        facts = browser.evaluate(_REPORT_FACTS)
        assert browser.errors() == []
    finally:
        browser.close()
    assert facts["doctype"] == "html"
    assert facts["scripts"] == facts["handlers"] == facts["external"] == 0
    assert facts["pngs"] == 1 and facts["tables"] == 1
    assert "<script>" in facts["headers"]  # a column named <script> is shown as text
    assert "import helper" in facts["text"] and "%%capture out" in facts["text"]


def test_the_helper_written_by_writefile_travels_as_a_file(magic_run: dict):
    flow = json.loads((magic_run["run_dir"].parent.parent / "dataflow.json").read_text())
    use = next(s for s in flow["steps"] if s["name"] == "use")
    assert {"name": "helper.py", "from": "write", "marshaller": "file"}.items() <= next(
        i for i in use["inputs"] if i["name"] == "helper.py"
    ).items()


@pytest.mark.parametrize(
    "source, named",
    [
        ("%connect_info", "%connect_info"),
        ("%qtconsole", "%qtconsole"),
        ("%matplotlib widget", "%matplotlib widget"),
        ("x = 1\n%debug", "%debug"),
    ],
)
def test_kernel_only_magics_are_refused_naming_the_cell(notebook, compile_nb, source, named):
    path = notebook([("step:a", "x = 0"), (["step:b", "prev:a"], source)])
    with pytest.raises(KaleTraceError) as raised:
        compile_nb(path, trace=False)
    error = raised.value
    assert error.cell == 1 and error.step == "b" and named in error.message
    assert error.fix and "skip" in error.fix or "inline" in error.fix


def test_pip_install_lines_become_the_steps_packages_with_a_note(notebook, compile_nb):
    path = notebook(
        [("step:a", "%pip install -q 'six>=1.0' --index-url https://example.invalid\nx = 1")]
    )
    compiled = compile_nb(path, trace=False)
    source = compiled.python_path.read_text()
    assert '"six>=1.0",' in source  # in packages_to_install
    assert "# %pip install -q 'six>=1.0'" in source  # the line itself no longer runs
    [note] = [n for n in compiled.dataflow.notebook.notes if n.cell == 0]
    assert "six>=1.0" in note.message and "packages_to_install" in note.message


def test_report_false_leaves_the_report_out(notebook, compile_nb):
    path = notebook([("step:a", "print(1)"), (["step:b", "prev:a", "report:false"], "print(2)")])
    source = compile_nb(path, trace=False).python_path.read_text()
    a, b = source.split("\ndef b(")
    assert "step_report: Output[HTML]" in a and "step_report" not in b.split("@dsl.pipeline")[0]


def test_without_ipython_steps_run_plain_python_and_name_what_needs_it(notebook, compile_nb):
    """A step image without IPython: the rewrites of today, and `!` cells fail clearly."""
    path = notebook([("step:a", "%time s = sum([1, 2])\nprint(s)"), ([], "!echo hi")])
    compiled = compile_nb(path, trace=False, install=False)
    probe = f"""
import sys, types, importlib.util, json
sys.modules["IPython"] = None  # as where IPython is not installed
spec = importlib.util.spec_from_file_location("pipeline", {str(compiled.python_path)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
out = types.SimpleNamespace(path={str(compiled.outdir / "cells.json")!r})
report = types.SimpleNamespace(path={str(compiled.outdir / "report.html")!r})
try:
    module.a.python_func(cell_outputs=out, step_report=report)
except SystemExit as stop:
    print("EXIT", stop)
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    needs = "EXIT kale-trace: <nb.ipynb cell 1, step a> needs IPython"
    assert needs in result.stdout, result.stderr
    kept = json.loads((compiled.outdir / "cells.json").read_text())
    assert kept == {"cells": [{"cell": 0, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "3\n"}]}, {"cell": 1, "outputs": []}
    ]}  # fmt: skip


def test_a_failed_run_still_writes_its_output_notebook_with_the_error(notebook, tmp_path):
    path = notebook(
        [
            ("parameters", "fail = False"),
            ("step:a", "print('before')"),
            (["step:b", "prev:a"], "if fail:\n    raise ValueError('boom')"),
        ]
    )
    (tmp_path / "sample.yaml").write_text("fail: false")
    result = subprocess.run(
        [*CLI, "run", str(path), "-o", str(tmp_path / "out"), "-p", "fail", "true",
         "--sample-params", str(tmp_path / "sample.yaml")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1 and "ValueError: boom" in result.stderr
    [written] = (tmp_path / "out" / "runs").glob("*/nb.ipynb")
    assert str(written) in result.stderr.replace("\n", "")
    cells = nbformat.read(str(written), as_version=4).cells
    assert cells[1].outputs == [{"output_type": "stream", "name": "stdout", "text": "before\n"}]
    [error] = cells[2].outputs
    assert (error.output_type, error.ename, error.evalue) == ("error", "ValueError", "boom")
    assert any("raise ValueError('boom')" in line for line in error.traceback)


def test_output_notebook_takes_each_cells_outputs_from_its_own_step(notebook, trace):
    from kale_trace.runners.results import output_notebook

    path = notebook(
        [
            ("imports", "import os"),
            (None, "# words"),
            ("step:a", "print('a')"),
            ("skip", "print('never')"),
            (["step:b", "prev:a"], "print('b')"),
        ]
    )
    flow = trace(path, trace=False)
    shown = {"output_type": "stream", "name": "stdout", "text": "x\n"}
    produced = output_notebook(
        flow,
        {
            "a": {0: [{**shown, "text": "imports in a\n"}], 2: [{**shown, "text": "a\n"}]},
            "b": {0: [{**shown, "text": "imports in b\n"}], 4: [{**shown, "text": "b\n"}]},
        },
    )
    texts = [[o.text for o in c.outputs] if c.cell_type == "code" else None for c in produced.cells]
    assert texts == [["imports in a\n"], None, ["a\n"], [], ["b\n"]]
    assert [c.get("execution_count") for c in produced.cells] == [1, None, 2, None, 3]
