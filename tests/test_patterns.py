"""One tagged notebook per pattern of shared/PATTERNS.md, traced for real.

Each test asserts the exact edges (producer, consumer, variable) of `dataflow.json` — so
every edge that must not appear is excluded too — and, where the notebook can run here,
that the locally run pipeline ends with the same `result` as the notebook run top to bottom.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import edges, read_json
from nbclient import NotebookClient

from kale_trace.compiler import CompileOptions, compile_notebook
from kale_trace.errors import KaleTraceError
from kale_trace.runners.local import run_locally

_DUMP = "import json as _json\nopen('result.json', 'w').write(_json.dumps(result))"


def reproduces(path: Path, tmp_path: Path, **options) -> list:
    """Run the notebook as a local pipeline and as a plain notebook; both final `result`s.

    The last step gets one more cell writing its `result` to result.json (it reads nothing
    else, so the dataflow is unchanged).
    """
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_DUMP))  # continues the last step
    nbformat.write(nb, str(path))
    result_file = path.parent / "result.json"

    compiled = compile_notebook(
        path, tmp_path / "out", CompileOptions(overrides={}, samples={}, **options)
    )
    result_file.unlink()
    run_locally(compiled.dataflow, tmp_path / "out" / "runs")
    pipeline = json.loads(result_file.read_text())
    result_file.unlink()

    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    notebook = json.loads(result_file.read_text())
    assert pipeline == notebook
    return pipeline


def warned(flow) -> set[tuple[str, str]]:
    return {(w["step"], w["variable"]) for w in flow.warnings}


# 1
def test_in_place_mutation(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import pandas as pd"),
            ("step:a", "df = pd.DataFrame({'x': [1.0, None, 3.0]})\nlst = [1]"),
            (["step:d", "prev:a"], "before = len(df)"),
            (["step:b", "prev:d"], "df.dropna(inplace=True)\nlst.append(2)"),
            (["step:c", "prev:b"], "result = [len(df), lst]"),
        ]
    )
    assert edges(trace(path)) == {
        ("a", "d", "df"), ("a", "b", "df"), ("a", "b", "lst"), ("b", "c", "df"), ("b", "c", "lst"),
    }  # fmt: skip
    assert reproduces(path, tmp_path) == [2, [1, 2]]


# 2
def test_augmented_assignment(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import numpy as np"),
            ("step:a", "total = 1\narr = np.zeros(3)\nlst = []"),
            (["step:b", "prev:a"], "total += 10\narr += 1\nlst += [1]"),
            (["step:c", "prev:b"], "result = [total, arr.tolist(), lst]"),
        ]
    )
    assert edges(trace(path)) == {
        (p, c, n) for p, c in (("a", "b"), ("b", "c")) for n in ("total", "arr", "lst")
    }
    assert reproduces(path, tmp_path) == [11, [1.0, 1.0, 1.0], [1]]


# 3
def test_mutation_through_a_function_or_method(notebook, trace, tmp_path):
    path = notebook(
        [
            ("functions", "def bump(values):\n    values.append(len(values))\n\n"
                          "class Acc:\n    def fit(self, xs):\n        self.total = sum(xs)\n"
                          "        return self"),
            ("step:a", "lst = []\nacc = Acc()"),
            (["step:b", "prev:a"], "bump(lst)\nacc.fit([1, 2, 3])"),
            (["step:c", "prev:b"], "result = [lst, acc.total]"),
        ]
    )  # fmt: skip
    assert edges(trace(path)) == {
        ("a", "b", "lst"), ("a", "b", "acc"), ("b", "c", "lst"), ("b", "c", "acc"),
    }  # fmt: skip
    assert reproduces(path, tmp_path) == [[0], 6]


# 4
def test_writes_through_views_and_aliases(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import numpy as np\nimport pandas as pd"),
            ("step:a", "arr = np.arange(6.0)\ndf = pd.DataFrame({'x': [1.0, 2.0]})"),
            (["step:b", "prev:a"], "view = arr[:3]\nview += 1\ndf2 = df\ndf2['c'] = 1"),
            (["step:c", "prev:b"], "s = df['x']\ns.iloc[0] = 50.0"),  # pandas 3: a copy
            (["step:d", "prev:c"], "result = [arr.tolist(), df.to_dict('list')]"),
        ]
    )
    flow = trace(path)
    # b wrote arr through a view and df through an alias; c's write went to a copy.
    assert edges(flow) == {
        ("a", "b", "arr"), ("a", "b", "df"), ("b", "c", "df"), ("b", "d", "arr"), ("b", "d", "df"),
    }  # fmt: skip
    assert reproduces(path, tmp_path) == [
        [1.0, 2.0, 3.0, 3.0, 4.0, 5.0],
        {"x": [1.0, 2.0], "c": [1, 1]},
    ]


# 5
def test_del(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import pandas as pd"),
            ("step:a", "tmp = 1\nkeep = 2\ndf = pd.DataFrame({'x': [1], 'col': [2]})"),
            (["step:b", "prev:a"], "x = tmp + keep\ndel tmp\ndel df['col']"),
            (["step:c", "prev:b"], "result = [keep, list(df.columns)]\nif False:\n    print(tmp)"),
        ]
    )
    assert edges(trace(path)) == {
        ("a", "b", "tmp"), ("a", "b", "keep"), ("a", "b", "df"), ("a", "c", "keep"),
        ("b", "c", "df"),
    }  # fmt: skip
    assert reproduces(path, tmp_path) == [2, ["x"]]


def test_reading_a_deleted_name_fails_the_trace_with_the_cell(notebook, trace):
    path = notebook([("step:a", "tmp = 1"), (["step:b", "prev:a"], "del tmp"),
                     (["step:c", "prev:b"], "y = tmp")])  # fmt: skip
    with pytest.raises(KaleTraceError) as error:
        trace(path)
    assert error.value.step == "c" and error.value.cell == 2
    assert "NameError" in error.value.render()


# 6
def test_global_inside_functions(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "def g():\n    global a\n    a = 99"),
            (["step:b", "prev:a"], "g()"),
            (["step:c", "prev:b"], "result = a"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("b", "c", "a")}
    assert set(flow.step("b").definitions) == {"g"}
    assert reproduces(path, tmp_path) == 99


# 7
def test_closures_and_functions_reading_step_variables(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "threshold = 2\ndef score(x):\n    return x > threshold\n"
                       "def make_adder(n):\n    def add(x):\n        return x + n\n    return add\n"
                       "add5 = make_adder(5)"),
            (["step:c", "prev:a"], "result = [sum(score(v) for v in [1, 2, 3]), add5(1)]"),
        ]
    )  # fmt: skip
    flow = trace(path)
    # score is re-emitted and brings its global; the closure travels by value, flagged.
    assert edges(flow) == {("a", "c", "threshold"), ("a", "c", "add5")}
    assert set(flow.step("c").definitions) == {"score"}
    assert flow.step("c").inputs[0].marshaller == "cloudpickle"
    assert ("c", "add5") in warned(flow)
    assert reproduces(path, tmp_path) == [1, 6]


# 8
def test_class_defined_in_one_step_used_in_others(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "class Model:\n    def __init__(self, k):\n        self.k = k\n"
                       "    def predict(self, x):\n        return self.k * x"),
            (["step:b", "prev:a"], "m = Model(2)"),
            (["step:c", "prev:b"], "result = m.predict(3)"),
        ]
    )  # fmt: skip
    flow = trace(path)
    assert edges(flow) == {("b", "c", "m")}
    assert set(flow.step("b").definitions) == {"Model"}
    assert flow.step("c").inputs[0].marshaller == "cloudpickle"
    assert reproduces(path, tmp_path) == 6


# 9
def test_lambdas(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "key = lambda r: r['score']\nrows = [{'score': 3}, {'score': 5}]"),
            (["step:b", "prev:a"], "result = max(rows, key=key)"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "b", "rows")}
    assert flow.step("b").definitions == {"key": "key = lambda r: r['score']"}
    assert reproduces(path, tmp_path) == {"score": 5}


# 10
def test_generators_crossing_a_step_are_an_error(notebook, trace):
    path = notebook([("step:a", "data = [1, 2, 3]\ngen = (x * x for x in data)\nfirst = next(gen)"),
                     (["step:b", "prev:a"], "rest = list(gen)")])  # fmt: skip
    with pytest.raises(KaleTraceError) as error:
        trace(path)
    message = error.value.render()
    assert "'gen'" in message and "generator" in message
    assert "'a'" in message and "'b'" in message and "merge" in message


# 11
@pytest.mark.parametrize(
    "create, kind",
    [("res = open('out.txt', 'w')", "TextIOWrapper"), ("import threading\nres = threading.Lock()",
     "lock"), ("import sqlite3\nres = sqlite3.connect(':memory:')", "Connection")],
)  # fmt: skip
def test_open_resources_are_never_marshalled(notebook, trace, create, kind):
    path = notebook([("step:a", create), (["step:b", "prev:a"], "print(res)")])
    with pytest.raises(KaleTraceError) as error:
        trace(path)
    assert kind in error.value.render() and error.value.step == "b"


# 12
def test_random_state_is_a_hidden_dependency(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import numpy as np\nimport random\nimport torch"),
            ("step:a", "np.random.seed(0)\nrandom.seed(1)\ntorch.manual_seed(2)"),
            (["step:b", "prev:a"], "x = np.random.rand()"),
            (["step:c", "prev:b"], "y = random.random()\nrng = np.random.default_rng(0)"),
            (["step:d", "prev:c"], "z = rng.random()\nt = float(torch.rand(1))\n"
                                   "result = [x, y, z, t]"),
        ]
    )  # fmt: skip
    flow = trace(path)
    # Each global generator's state travels from the step that left it to the one that draws
    # from it; an explicit Generator travels as data. Exact, so nothing is warned.
    assert edges(flow) == {
        ("a", "b", "numpy.random"), ("a", "c", "random"), ("a", "d", "torch.random"),
        ("c", "d", "rng"), ("b", "d", "x"), ("c", "d", "y"),
    }  # fmt: skip
    assert warned(flow) == set()
    x, y, z, t = reproduces(path, tmp_path)
    assert (round(x, 6), round(y, 6)) == (0.548814, 0.134364)


# 13
def test_star_imports(notebook, trace, tmp_path):
    path = notebook([("step:a", "from math import *\nw = 16.0"),
                     (["step:b", "prev:a"], "result = [sqrt(w), floor(pi)]")])  # fmt: skip
    flow = trace(path)
    # Functions are re-imported; a constant is a plain value and travels as a typed parameter.
    assert edges(flow) == {("a", "b", "w"), ("a", "b", "pi")}
    assert {f.variable: f.marshaller for f in flow.step("b").inputs}["pi"] == "parameter"
    assert flow.step("b").imports == {
        "sqrt": "from math import sqrt", "floor": "from math import floor",
    }  # fmt: skip
    assert reproduces(path, tmp_path) == [4.0, 3]


# 14
def test_exec_eval_globals_and_main_module_writes(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "import sys\nexec('made = 7')\nglobals()['g1'] = 5\n"
                       "setattr(sys.modules['__main__'], 'h1', 3)\nname = 'made'"),
            (["step:b", "prev:a"], "result = [eval(name), globals()['g1'], "
                                   "sys.modules['__main__'].h1]"),
        ]
    )  # fmt: skip
    flow = trace(path)
    # made, g1 and h1 are read by computed names: only the read-tracking namespace sees them.
    assert edges(flow) == {("a", "b", "made"), ("a", "b", "g1"), ("a", "b", "h1"),
                           ("a", "b", "name")}  # fmt: skip
    assert flow.step("b").imports == {"sys": "import sys"}
    assert reproduces(path, tmp_path) == [7, 5, 3]


# 15
def test_magics_that_run_user_code(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "def f(x):\n    return x * 2\nx = 21"),
            (["step:b", "prev:a"], "%time z = f(x)"),
            (["step:c", "prev:b"], "%%capture out\nprint('hello')"),
            (["step:d", "prev:c"], "result = [z, out.stdout]"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "b", "x"), ("b", "d", "z"), ("c", "d", "out")}
    assert set(flow.step("b").definitions) == {"f"}
    assert reproduces(path, tmp_path) == [42, "hello\n"]


# 16
def test_environment_magics_are_hidden_state(notebook, trace):
    path = notebook(
        [
            ("step:a", "%env KALE_TRACE_TEST=1\nv = 1"),
            (["step:b", "prev:a"], "import os\nflag = os.environ.get('KALE_TRACE_TEST')"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == set()
    # the value is in the notebook's code: it travels as a setting of b, nothing to warn
    assert flow.step("b").settings["environ"] == {"KALE_TRACE_TEST": "1"}
    assert ("a", "environ") not in warned(flow)


def test_shell_lines_run_in_the_step_as_in_jupyter(notebook, trace, tmp_path):
    """Issue 14: steps run cells through IPython, so a `!` line is the step's, as written."""
    path = notebook([("step:a", "!touch made-by-shell.txt")])
    compiled = compile_notebook(path, tmp_path / "out", CompileOptions({}, {}))
    source = compiled.python_path.read_text()
    assert '"""!touch made-by-shell.txt""", cell=0, needs_ipython=True' in source


# 17
def test_loop_and_comprehension_variables(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "rows = [1, 2, 3]\nacc = []\nfor row in rows:\n    acc.append(row * 2)\n"
                       "squares = [v * v for v in rows]"),
            (["step:b", "prev:a"], "result = [sum(acc), squares]"),
        ]
    )  # fmt: skip
    assert edges(trace(path)) == {("a", "b", "acc"), ("a", "b", "squares")}
    assert reproduces(path, tmp_path) == [12, [1, 4, 9]]


# 18
def test_shadowing_and_reused_names(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "from statistics import mean\nmean = mean([1, 2, 3])\ndf = [1]"),
            (["step:b", "prev:a"], "df = [2, 3]"),
            (["step:c", "prev:b"], "result = [mean, df]"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "c", "mean"), ("b", "c", "df")}
    mean = next(f for f in flow.step("c").inputs if f.variable == "mean")
    assert mean.info["type"] == "int" and flow.step("c").imports == {}
    assert reproduces(path, tmp_path) == [2, [2, 3]]


# 19
def test_files_as_dataflow(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import pandas as pd\nimport numpy as np\nimport os"),
            ("step:a", "os.makedirs('work', exist_ok=True)\n"
                       "pd.DataFrame({'x': [1, 2]}).to_parquet('work/tmp.parquet')\n"
                       "np.save('arr.npy', np.arange(3))\nopen('notes.txt', 'w').write('hi')"),
            (["step:b", "prev:a"], "df = pd.read_parquet('work/tmp.parquet')\n"
                                   "arr = np.load('arr' + '.npy')"),
            (["step:c", "prev:b"], "result = [df.x.tolist(), arr.tolist(), "
                                   "open('notes.txt').read()]"),
        ]
    )  # fmt: skip
    flow = trace(path)
    # parquet is read natively (seen by its path in the code), the others through open().
    assert edges(flow) == {
        ("a", "b", "work/tmp.parquet"), ("a", "b", "arr.npy"), ("a", "c", "notes.txt"),
        ("b", "c", "df"), ("b", "c", "arr"),
    }  # fmt: skip
    files = [f for s in flow.steps for f in s.inputs if f.marshaller == "file"]
    assert len(files) == 3 and all(f.info["type"] == "file" for f in files)
    assert ("b", "work/tmp.parquet") in warned(flow)
    assert reproduces(path, tmp_path) == [[1, 2], [0, 1, 2], "hi"]
    [artifact] = (tmp_path / "out" / "runs").glob("*/outputs/*/a/file_notes_txt")
    assert artifact.read_text() == "hi"


# 20
def test_pyplot_current_figure_across_steps(notebook, trace, tmp_path):
    path = notebook(
        [
            ("imports", "import matplotlib\nmatplotlib.use('Agg')\n"
                        "import matplotlib.pyplot as plt"),
            ("step:a", "plt.plot([1, 2, 3])\nfig = plt.figure()\nfig.gca().plot([3, 2])"),
            (["step:b", "prev:a"], "plt.savefig('plot.png')"),
            (["step:c", "prev:a"], "fig.savefig('fig.png')\nresult = len(fig.axes)"),
            (["step:d", "prev:c"], "df_display = None\nprint(result)"),
        ]
    )  # fmt: skip
    flow = trace(path)
    assert edges(flow) == {("a", "c", "fig"), ("c", "d", "result")}
    assert ("b", "matplotlib.pyplot") in warned(flow)  # draws on a's current figure
    assert ("c", "matplotlib.pyplot") not in warned(flow)  # passes the Figure itself


# 21
def test_lazy_objects_are_fingerprinted_without_computing(notebook, trace, tmp_path):
    lazy = (
        "computed = []\n"
        "class LazyFrame:\n"
        "    def __init__(self, query):\n        self.query = query\n"
        "    def _compute(self, *args):\n"
        "        computed.append(1)\n        raise RuntimeError('remote')\n"
        "    __iter__ = __len__ = __eq__ = __hash__ = __repr__ = _compute\n"
        "    def count(self):\n        return len(self.query)\n"
    )  # fmt: skip
    path = notebook(
        [
            ("step:a", lazy + "lf = LazyFrame('select 1')"),
            (["step:b", "prev:a"], "lf.query = lf.query + ' union select 2'"),
            (["step:c", "prev:b"], "result = [lf.count(), len(computed)]"),
        ]
    )
    flow = trace(path)
    # Mutation is seen through vars(); nothing asked the object to compute.
    assert edges(flow) == {("a", "b", "lf"), ("b", "c", "lf"), ("a", "c", "computed")}
    assert reproduces(path, tmp_path) == [23, 0]


# 22
def test_parameters_cell_rebound_later(notebook, trace, tmp_path):
    path = notebook(
        [
            ("parameters", "epochs = '10'\nrate = 0.5"),
            ("step:a", "epochs = int(epochs) * 2"),
            (["step:b", "prev:a"], "result = [epochs, rate]"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "b", "epochs")}
    assert flow.step("a").parameters == ["epochs"] and flow.step("b").parameters == ["rate"]
    assert reproduces(path, tmp_path) == [20, 0.5]


# 23
def test_sampled_parameters_for_an_expensive_dry_run(notebook, tmp_path):
    path = notebook(
        [
            ("parameters", "rows = 10_000_000"),
            ("step:a", "data = list(range(rows))"),
            (["step:b", "prev:a"], "total = sum(data)"),
        ]
    )
    compiled = compile_notebook(
        path, tmp_path / "out", CompileOptions(overrides={}, samples={"rows": 10})
    )
    flow = read_json(compiled.dataflow_path)
    assert flow["parameters"] == [{"name": "rows", "type": "int", "default": 10_000_000,
                                   "sample": 10}]  # fmt: skip
    [data] = flow["steps"][1]["inputs"]
    assert data["saved_bytes"] < 1000  # the dry run held 10 items, not 10 million
    assert "10000000" in compiled.yaml_path.read_text()


def test_a_cell_over_the_timeout_names_the_cell(notebook, trace):
    path = notebook([("step:a", "x = 1"), (["step:b", "prev:a"], "import time\ntime.sleep(30)")])
    with pytest.raises(KaleTraceError) as error:
        trace(path, cell_timeout=1.0)
    assert error.value.cell == 1 and error.value.step == "b"
    assert "--cell-timeout" in error.value.render()


# 24
def test_cells_that_error_on_purpose(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "try:\n    import not_a_real_module_kt\nexcept ImportError:\n"
                       "    not_a_real_module_kt = None\nv = 3"),
            (["step:b", "prev:a", "raises-exception"], "1 / 0"),
            (["step:c", "prev:b"], "result = [v, not_a_real_module_kt is None]"),
        ]
    )  # fmt: skip
    flow = trace(path)
    assert edges(flow) == {("a", "c", "v"), ("a", "c", "not_a_real_module_kt")}
    assert reproduces(path, tmp_path) == [3, True]  # the tagged cell fails; the step goes on
    failing = notebook([("step:a", "x = 1"), (["step:b", "prev:a"], "y = x / 0")], name="f.ipynb")
    with pytest.raises(KaleTraceError) as error:
        trace(failing)
    assert error.value.step == "b" and "ZeroDivisionError" in error.value.render()


def test_aliases_travel_as_one_object(notebook, trace, tmp_path):
    path = notebook(
        [
            ("step:a", "a = [1]\nb = a"),
            (["step:b", "prev:a"], "b.append(2)"),
            (["step:c", "prev:b"], "result = [a, b, a is b]"),
        ]
    )
    flow = trace(path)
    # b writes through `b`, so it receives `a` too; both arrive as one object.
    assert edges(flow) == {("a", "b", "a"), ("a", "b", "b"), ("b", "c", "a"), ("b", "c", "b")}
    aliases = {(s.name, f.variable): f.alias_of for s in flow.steps for f in s.inputs}
    assert aliases == {("b", "a"): None, ("b", "b"): "a", ("c", "a"): None, ("c", "b"): "a"}
    assert [o.variable for o in flow.step("b").outputs] == ["a"]
    assert reproduces(path, tmp_path) == [[1, 2], [1, 2], True]


def test_a_value_changed_through_a_reference_it_holds_is_warned(notebook, trace):
    path = notebook(
        [
            ("step:a", "a = [1]\nd = {'k': a}"),
            (["step:b", "prev:a"], "a.append(2)"),
            (["step:c", "prev:b"], "result = [a, d]"),
        ]
    )
    flow = trace(path)
    # d changed in b, but b never held d: c gets d from a, and the reviewer is told.
    assert edges(flow) == {("a", "b", "a"), ("b", "c", "a"), ("a", "c", "d")}
    assert ("b", "d") in warned(flow)


def test_files_that_exist_before_the_run_are_named_for_cluster_runs(notebook, trace, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x\n1\n2\n")
    (tmp_path / "helpers.py").write_text("def double(v):\n    return 2 * v\n")
    path = notebook(
        [
            ("imports", "import helpers"),
            ("step:a", "rows = open('data/train.csv').read().split()[1:]"),
            (["step:b", "prev:a"], "total = sum(helpers.double(int(r)) for r in rows)"),
        ]
    )
    flow = trace(path)
    assert edges(flow) == {("a", "b", "rows")}
    assert ("a", "data/train.csv") in warned(flow)
    assert ("(imports and functions)", "helpers.py") in warned(flow)
