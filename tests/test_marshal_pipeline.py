"""One value of every marshalling family crosses a step of a real local pipeline, unchanged.

The consumer step recomputes every value with the same function and asserts each one is
identical to what arrived; the producer's artifacts carry the metadata (marshaller, type,
size, checksum) the consumer checked before loading.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import read_json

FUNCTIONS = """
class Point:
    def __init__(self, x, label):
        self.x, self.label = x, label

def make_values():
    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    frame = pd.DataFrame(
        {
            "price €": rng.normal(size=6),
            "count": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "kind": pd.Categorical(list("abcabc"), categories=list("cbad"), ordered=True),
            "when": pd.date_range("2024-03-30", periods=6, freq="12h", tz="Europe/Paris"),
            "label": pd.array(["x", None, "ÿ", "z", "", "w"], dtype="str"),
            "gap": [np.nan, 1.0, np.inf, -0.0, 2.5, np.nan],
        },
        index=pd.MultiIndex.from_product([["p", "q"], [1, 2, 3]], names=["group", "n"]),
    )
    return (
        42, 0.25, "kale ✓", True, [1.5, 2.5], {"a": [1.0], "b": {"c": "d"}},
        {"a": [1, 2]}, {f"k{i}": "v" * 50 for i in range(2000)},
        np.arange(12, dtype=">f4").reshape(3, 4).T, np.array([{"a": 1}, None], dtype=object),
        frame, pd.DataFrame({"obj": [1, "two", None], "x": [1.0, 2.0, 3.0]}),
        pd.Series([1.5, np.nan, 3.0], index=["a", "b", "c"], name="s"),
        pa.table({"id": [1, 2, None], "name": ["é", None, "c"]}),
        sp.random(20, 10, density=0.2, format="csr", random_state=3),
        LogisticRegression().fit(rng.normal(size=(20, 3)), [0, 1] * 10), Point(1, "p"),
        torch.arange(12, dtype=torch.float64).reshape(3, 4).T, torch.nn.Linear(3, 2),
    )

def same(a, b):
    if isinstance(b, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return type(a.index) is type(b.index)
    if isinstance(b, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True)
        return True
    if isinstance(b, np.ndarray):
        same_bytes = a.tolist() == b.tolist() if b.dtype == object else a.tobytes() == b.tobytes()
        return a.dtype == b.dtype and a.shape == b.shape and same_bytes
    if isinstance(b, pa.Table):
        return a.equals(b, check_metadata=True)
    if sp.issparse(b):
        return type(a) is type(b) and a.dtype == b.dtype and (a != b).nnz == 0
    if isinstance(b, LogisticRegression):
        return np.array_equal(a.coef_, b.coef_) and a.get_params() == b.get_params()
    if isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(b, torch.nn.Module):
        pairs = zip(a.state_dict().items(), b.state_dict().items(), strict=True)
        return type(a) is type(b) and all(k == j and torch.equal(v, w) for (k, v), (j, w) in pairs)
    if type(b).__name__ == "Point":
        return type(a).__name__ == "Point" and vars(a) == vars(b)
    return type(a) is type(b) and a == b
"""

NAMES = [
    "number", "ratio", "text", "flag", "floats", "mapping", "counts", "big", "array",
    "objects", "frame", "mixed", "series", "table", "sparse", "model", "point", "tensor",
    "net",
]  # fmt: skip

EXPECTED = {
    "number": "parameter", "ratio": "parameter", "text": "parameter", "flag": "parameter",
    "floats": "parameter", "mapping": "parameter", "counts": "json", "big": "json",
    "array": "npy", "objects": "cloudpickle", "frame": "arrow", "mixed": "arrow+pickle",
    "series": "arrow", "table": "arrow", "sparse": "npz", "model": "joblib",
    "point": "cloudpickle", "tensor": "torch-tensor", "net": "torch-module",
}  # fmt: skip

CHECK = "\n".join(
    [f"({', '.join(f'want_{n}' for n in NAMES)}) = make_values()", "arrived = 0"]
    + [f"assert same({n}, want_{n}), {n!r}\narrived += 1" for n in NAMES]
)


def test_every_family_arrives_unchanged(notebook, tmp_path):
    path = notebook([
        ("imports", "import numpy as np\nimport pandas as pd\nimport pyarrow as pa\n"
                    "import scipy.sparse as sp\nimport torch\n"
                    "from sklearn.linear_model import LogisticRegression"),
        ("functions", FUNCTIONS),
        ("step:make", f"({', '.join(NAMES)}) = make_values()"),
        (["step:check", "prev:make"], CHECK),
        ("pipeline-metrics", "arrived"),
    ])  # fmt: skip
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "kale_trace", "run", str(path), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout

    flow = read_json(out / "dataflow.json")
    check = next(s for s in flow["steps"] if s["name"] == "check")
    assert {i["name"]: i["marshaller"] for i in check["inputs"]} == EXPECTED

    [metrics_output] = (out / "runs").glob("*/outputs/*/check/executor_output.json")
    metrics = read_json(metrics_output)["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["arrived"] == len(NAMES)

    [make_output] = (out / "runs").glob("*/outputs/*/make/executor_output.json")
    artifacts = {
        name: entry["artifacts"][0]["metadata"]
        for name, entry in read_json(make_output)["artifacts"].items()
        if name not in ("cell_outputs", "step_report")  # what the cells printed, the report
    }
    carried = {n for n, m in EXPECTED.items() if m != "parameter"}
    assert set(artifacts) == carried
    for name in carried:
        metadata = artifacts[name]
        assert metadata["marshaller"] == EXPECTED[name]
        assert metadata["checksum"].startswith(("xxh3_128:", "sha256:"))
        assert metadata["size_bytes"] > 0
    assert artifacts["array"]["shape"] == [4, 3] and artifacts["array"]["dtype"] == ">f4"
    assert artifacts["frame"]["dtypes"]["kind"] == "category"
