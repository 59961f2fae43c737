"""Every marshaller's emitted save/load code round-trips its family exactly (issue 4).

The sources are exec'd exactly as a generated component holds them; artifacts are stand-ins
with `.path` and `.metadata`, which is all the emitted helpers use.
"""

from __future__ import annotations

import json
import pickle
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kale_trace.errors import KaleTraceError
from kale_trace.marshal import (
    ARROW,
    ARROW_PICKLED,
    CLOUDPICKLE,
    JOBLIB,
    JSON,
    NPY,
    NPZ,
    PARAMETER,
    Marshaller,
    all_marshallers,
    choose_marshaller,
)
from kale_trace.marshal.roundtrip import emitted_functions, same_value
from kale_trace.tracer.fingerprint import fingerprint
from kale_trace.tracer.kernel_probe import describe

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def save(marshaller: Marshaller, value, path: Path) -> dict:
    functions = emitted_functions(marshaller)
    artifact = types.SimpleNamespace(path=str(path), metadata={})
    save = functions[marshaller.save_function]
    functions["_kale_write_artifact"](artifact, marshaller.name, value, save)
    return artifact.metadata


def load(marshaller: Marshaller, path: Path, metadata: dict, allow_pickle: bool | None = None):
    functions = emitted_functions(marshaller)
    artifact = types.SimpleNamespace(path=str(path), metadata=metadata)
    data = functions["_kale_read_artifact"](artifact, "value", "producer")
    if allow_pickle is None:
        return functions[marshaller.load_function](data)
    return functions[marshaller.load_function](data, allow_pickle=allow_pickle)


def round_trip(value, tmp_path: Path, marshaller: Marshaller | None = None, **load_options):
    """Save and load through the marshaller the compiler would choose for this value."""
    marshaller = marshaller or choose_marshaller(describe(value))
    path = tmp_path / f"artifact-{marshaller.name}"
    metadata = save(marshaller, value, path)
    assert metadata["marshaller"] == marshaller.name
    assert metadata["size_bytes"] == path.stat().st_size
    json.dumps(metadata)  # KFP stores metadata as a protobuf Struct
    if marshaller.load_arguments:
        load_options.setdefault("allow_pickle", True)
    return load(marshaller, path, metadata, **load_options)


# --- JSON -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@SETTINGS
@given(value=json_values)
def test_json_artifacts_round_trip_exactly(value, tmp_path):
    back = round_trip(value, tmp_path, JSON)
    assert repr(back) == repr(value)  # repr: 1 and 1.0 and True are told apart


def test_json_families_choose_parameters_or_a_json_artifact():
    assert choose_marshaller(describe(3)) is PARAMETER
    assert choose_marshaller(describe({"a": [1.5]})) is PARAMETER
    assert choose_marshaller(describe({"a": [1, 2]})) is JSON  # ints in containers
    assert choose_marshaller(describe({str(i): "x" * 10 for i in range(2000)})) is JSON
    big = {str(i): "x" * 100 for i in range(2000)}  # above the probe's inline JSON limit
    assert "json" not in describe(big) and choose_marshaller(describe(big)) is JSON


# --- numpy ----------------------------------------------------------------------------------

dtypes = (
    hnp.integer_dtypes(endianness="=") | hnp.integer_dtypes(endianness=">")
    | hnp.unsigned_integer_dtypes() | hnp.floating_dtypes(endianness="?")
    | hnp.complex_number_dtypes() | hnp.boolean_dtypes() | hnp.datetime64_dtypes()
    | hnp.timedelta64_dtypes() | hnp.unicode_string_dtypes(min_len=1)
    | hnp.byte_string_dtypes(min_len=1)
)  # fmt: skip
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


@SETTINGS
@given(array=arrays, layout=st.sampled_from(["c", "fortran", "strided"]))
def test_numpy_arrays_round_trip_exactly(array, layout, tmp_path):
    if layout == "fortran":
        array = np.asfortranarray(array)
    elif layout == "strided" and array.ndim:
        array = array[::2]
    assert choose_marshaller(describe(array)) is NPY
    back = round_trip(array, tmp_path)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()  # bit-exact: NaN payloads, -0.0, NaT
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        assert back.flags.f_contiguous  # Fortran order is kept, not silently transposed
    assert back.flags.writeable


def test_structured_and_object_arrays(tmp_path):
    record = np.array([(1, 2.5, b"x")], dtype=[("a", ">i4"), ("b", "<f8"), ("c", "S2")])
    back = round_trip(record, tmp_path)
    assert back.dtype == record.dtype and back.tobytes() == record.tobytes()
    objects = np.array([{"a": 1}, None, "x"], dtype=object)
    assert choose_marshaller(describe(objects)) is CLOUDPICKLE
    assert round_trip(objects, tmp_path).tolist() == objects.tolist()


# --- pandas and Arrow -----------------------------------------------------------------------

labels = st.text(alphabet="aé中b_ 1", min_size=1, max_size=4)


@st.composite
def frames(draw):
    rows = draw(st.integers(0, 5))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    floats = gen.normal(size=rows)
    floats[gen.random(rows) < 0.3] = np.nan
    nulls = gen.random(rows) < 0.3
    columns = {
        "float": floats,
        "int": gen.integers(-5, 5, rows),
        "uint8": gen.integers(0, 255, rows).astype("uint8"),
        "bool": gen.random(rows) < 0.5,
        "nullable": pd.array([None if n else i for i, n in enumerate(nulls)], dtype="Int64"),
        "string": pd.array([None if n else f"s{i}é" for n, i in enumerate(nulls)],
                           dtype="str"),
        "category": pd.Categorical(gen.choice(["x", "y", "中"], rows),
                                   categories=["x", "y", "中", "unused"], ordered=bool(rows % 2)),
        "tz": pd.DatetimeIndex(
            [pd.NaT if n else pd.Timestamp("2024-03-31 01:30") + pd.Timedelta(hours=i)
             for i, n in enumerate(nulls)]).tz_localize("Europe/Paris", ambiguous="NaT",
                                                        nonexistent="NaT"),
        "naive": pd.to_datetime(gen.integers(0, 10**9, rows), unit="s"),
        "delta": pd.to_timedelta(gen.integers(0, 10**6, rows), unit="ms"),
        "float32": gen.random(rows).astype("float32"),
        "objects": pd.Series([[1], "a", 2.5, None, {"k": 1}][:rows] + [None] * (rows - 5),
                             dtype=object),
        "big_endian": gen.random(rows).astype(">f8"),
        "complex": gen.random(rows) + 1j,
    }  # fmt: skip
    chosen = draw(st.lists(st.sampled_from(sorted(columns)), unique=True, max_size=6))
    names = draw(st.lists(labels, min_size=len(chosen), max_size=len(chosen), unique=True))
    frame = pd.DataFrame({name: columns[key] for name, key in zip(names, chosen, strict=True)})
    index = draw(st.sampled_from(["range", "strings", "multi", "dates", "objects"]))
    if index == "strings":
        frame.index = pd.Index([f"r{i}é" for i in range(rows)], name="row")
    elif index == "multi":
        frame.index = pd.MultiIndex.from_arrays(
            [[f"k{i % 2}" for i in range(rows)], list(range(rows))], names=["key", None]
        )
    elif index == "dates":
        frame.index = pd.date_range("2020-01-01", periods=rows, freq="D", tz="UTC")
    elif index == "objects":
        frame.index = pd.Index([(i, "t") for i in range(rows)], dtype=object, tupleize_cols=False)
    return frame


def _arrow_exact_dtype(dtype) -> bool:
    """Not objects, strings, complex numbers or a non-native byte order."""
    if str(dtype) == "object" or isinstance(dtype, pd.StringDtype):
        return False
    return getattr(dtype, "kind", "") != "c" and getattr(dtype, "isnative", True)


def frame_marshaller(frame: pd.DataFrame) -> Marshaller:
    return choose_marshaller(describe(frame))


@SETTINGS
@given(frame=frames())
def test_frames_round_trip_exactly(frame, tmp_path):
    # An object index is not in the traced info: the compile-time round trip sees it travel
    # pickled and compiles the loader that accepts that, as this does.
    back = round_trip(frame, tmp_path, ARROW_PICKLED)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert list(back.dtypes) == list(frame.dtypes)
    assert type(back.index) is type(frame.index) and back.index.names == frame.index.names


@SETTINGS
@given(frame=frames())
def test_frames_without_object_columns_never_unpickle(frame, tmp_path):
    # Not select_dtypes(exclude="str"): pandas 2 refuses string dtypes there.
    frame = (
        frame[[c for c in frame if _arrow_exact_dtype(frame[c].dtype)]]
        if len(frame.columns)
        else frame
    )
    if frame.index.dtype == object and not isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index(drop=True)
    assert frame_marshaller(frame) is ARROW
    back = round_trip(frame, tmp_path, ARROW, allow_pickle=False)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)


@SETTINGS
@given(frame=frames(), name=st.sampled_from([None, "values", 3, "é"]))
def test_series_round_trip_with_their_names(frame, name, tmp_path):
    if not len(frame.columns):
        return
    series = frame.iloc[:, 0].rename(name)
    back = round_trip(series, tmp_path, ARROW_PICKLED)
    pd.testing.assert_series_equal(back, series, check_exact=True)


def test_empty_frames_and_tables(tmp_path):
    for frame in (pd.DataFrame(), pd.DataFrame({"a": pd.Series([], dtype="float64")}),
                  pd.DataFrame(index=pd.Index(["x", "y"], name="i"))):  # fmt: skip
        back = round_trip(frame, tmp_path, frame_marshaller(frame))
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
    table = pa.table({"a": pa.array([1, None]), "é": ["x", None]}, metadata={"k": "v"})
    assert choose_marshaller(describe(table)) is ARROW
    assert round_trip(table, tmp_path).equals(table, check_metadata=True)


def test_pickled_parts_are_refused_by_a_safe_loader(tmp_path):
    frame = pd.DataFrame({"o": pd.Series([1, "a"], dtype=object)})
    assert frame_marshaller(frame) is ARROW_PICKLED
    path = tmp_path / "frame"
    metadata = save(ARROW, frame, path)
    with pytest.raises(ValueError, match="not unpickled"):
        load(ARROW, path, metadata, allow_pickle=False)
    pd.testing.assert_frame_equal(load(ARROW, path, metadata, allow_pickle=True), frame)


# --- scipy sparse, scikit-learn, everything else --------------------------------------------


@SETTINGS
@given(
    fmt=st.sampled_from(["csr", "csc", "coo", "bsr", "dia"]),
    dtype=st.sampled_from(["float64", "float32", "int64", "bool", "complex128"]),
    shape=st.tuples(st.integers(0, 6), st.integers(0, 6)),
    density=st.floats(0, 1),
    as_array=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_sparse_matrices_round_trip_as_npz(fmt, dtype, shape, density, as_array, seed, tmp_path):
    matrix = sp.random(*shape, density=density, format=fmt, dtype=dtype, random_state=seed)
    value = getattr(sp, f"{fmt}_array")(matrix) if as_array else matrix
    assert choose_marshaller(describe(value)) is NPZ
    back = round_trip(value, tmp_path)
    assert type(back) is type(value) and same_value(value, back)


class Custom:
    """A notebook-style class: cloudpickle carries it."""

    def __init__(self) -> None:
        self.values = [1.5, float("nan"), "é"]
        self.scale = lambda x: x * 2


def test_estimators_and_other_objects(tmp_path):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    assert choose_marshaller(describe(model)) is JOBLIB
    back = round_trip(model, tmp_path)
    assert fingerprint(back) == fingerprint(model) and same_value(model, back)
    value = Custom()
    assert choose_marshaller(describe(value)) is CLOUDPICKLE
    back = round_trip(value, tmp_path)
    assert back.values[2] == "é" and back.scale(2) == 4


def test_native_model_families_are_chosen_by_type():
    assert choose_marshaller({"type": "xgboost.core.Booster", "mro": ["xgboost.core.Booster"],
                              "kind": "data"}).name == "xgboost"  # fmt: skip
    assert (
        choose_marshaller(
            {"type": "lightgbm.basic.Booster", "mro": ["lightgbm.basic.Booster"], "kind": "data"}
        ).name
        == "lightgbm"
    )
    assert choose_marshaller({"type": "torch.Tensor", "mro": [], "kind": "data"}).name == (
        "torch-tensor"
    )
    net = {"type": "__main__.Net", "mro": ["__main__.Net", "torch.nn.modules.module.Module"]}
    assert choose_marshaller(net).name == "torch-module"


def test_emitted_sources_are_self_contained():
    for marshaller in all_marshallers():
        assert "kale_trace" not in marshaller.source
        compile(marshaller.source or "pass", marshaller.name, "exec")


# --- checksums ------------------------------------------------------------------------------


def test_checksum_mismatch_is_refused_before_loading(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "value"
    metadata = save(CLOUDPICKLE, {"a": 1}, path)
    assert metadata["checksum"].startswith(("xxh3_128:", "sha256:"))
    # Swap in a pickle that would run code if anything unpickled it.
    path.write_bytes(pickle.dumps(_Touch(str(marker))))
    with pytest.raises(RuntimeError) as error:
        load(CLOUDPICKLE, path, metadata)
    message = str(error.value)
    assert "'value'" in message and "'producer'" in message
    assert metadata["checksum"] in message and "got " in message
    assert not marker.exists()


def test_a_missing_checksum_is_refused(tmp_path):
    path = tmp_path / "value"
    save(NPY, np.arange(3), path)
    with pytest.raises(RuntimeError, match="carries no checksum"):
        load(NPY, path, {})


def test_sha256_is_used_without_xxhash(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_xxhash(name, *args, **kwargs):
        if name == "xxhash":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xxhash)
    metadata = save(NPY, np.arange(3.0), tmp_path / "value")
    assert metadata["checksum"].startswith("sha256:")
    assert load(NPY, tmp_path / "value", metadata).tolist() == [0.0, 1.0, 2.0]


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# --- the compile-time check -----------------------------------------------------------------


def test_values_that_do_not_survive_a_fresh_process_fail_the_compile(notebook, trace):
    path = notebook([
        ("step:make", "class Fragile:\n    def __reduce__(self):\n"
                      "        return (int, ('not a number',))\nvalue = Fragile()"),
        (["step:use", "prev:make"], "print(value)"),
    ])  # fmt: skip
    with pytest.raises(KaleTraceError) as error:
        trace(path)
    text = error.value.render()
    assert "'value'" in text and "Fragile" in text and "'make'" in text and "'use'" in text
    assert "loading it in a fresh process failed" in text and "ValueError" in text
    assert "fix: merge step 'make'" in text


def test_values_that_come_back_different_fail_the_compile(notebook, trace):
    path = notebook([
        ("step:make", "class Drifts:\n    def __init__(self):\n        self.n = 1\n"
                      "    def __reduce__(self):\n        return (dict, ())\nvalue = Drifts()"),
        (["step:use", "prev:make"], "print(value)"),
    ])  # fmt: skip
    with pytest.raises(KaleTraceError, match="comes back different"):
        trace(path)


def test_torch_tensors_and_modules_when_torch_is_installed(tmp_path):
    import torch  # a test dependency: never skipped

    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4).T
    marshaller = choose_marshaller(describe(tensor))
    assert marshaller.name == "torch-tensor" and marshaller.safe
    back = round_trip(tensor, tmp_path, marshaller)
    assert back.dtype == tensor.dtype and torch.equal(back, tensor)
    module = torch.nn.Linear(3, 2)
    marshaller = choose_marshaller(describe(module))
    assert marshaller.name == "torch-module"
    back = round_trip(module, tmp_path, marshaller)
    assert type(back) is type(module)
    pairs = zip(back.state_dict().values(), module.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_objects_without_an_exact_comparison_warn_instead_of_failing(notebook, trace):
    # A closure now compares exactly (its cells are fingerprinted); an object whose pickled
    # state holds a clock reading loads, but cannot be shown equal: a warning, not an error.
    path = notebook([
        ("step:make", "def make_adder(n):\n    def add(x):\n        return x + n\n    return add\n"
                      "add5 = make_adder(5)\n"
                      "class Model:\n"
                      "    def __init__(self):\n        self.w, self._cache = 2, {'hot': 1}\n"
                      "    def __getstate__(self):\n"
                      "        return {'w': self.w, 'at': __import__('time').perf_counter_ns()}\n"
                      "    def __setstate__(self, state):\n"
                      "        self.w, self._cache = state['w'], {}\n"
                      "model = Model()"),
        (["step:use", "prev:make"], "print(add5(1), model.w)"),
    ])  # fmt: skip
    flow = trace(path)
    unproven = [w for w in flow.warnings if "cannot show it comes back equal" in w["message"]]
    assert [(w["variable"], w["step"]) for w in unproven] == [("model", "make")]
