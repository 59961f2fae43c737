"""How each type family crosses a step, chosen at compile time from the traced type.

Each marshaller carries the source of its save and load functions: code generation pastes
into a component only the ones its own inputs and outputs need, so generated pipelines
import nothing from kale-trace. Every artifact is written and read through the helpers in
`ARTIFACT_IO_SOURCE`, which record and check a checksum (see `sources`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kale_trace.marshal.sources import (
    ARROW_SOURCE,
    ARTIFACT_IO_SOURCE,
    CLOUDPICKLE_SOURCE,
    FILE_SOURCE,
    JOBLIB_SOURCE,
    JSON_SOURCE,
    LIGHTGBM_SOURCE,
    NPY_SOURCE,
    NPZ_SOURCE,
    RNG_STATE_SOURCE,
    TORCH_MODULE_SOURCE,
    TORCH_TENSOR_SOURCE,
    XGBOOST_SOURCE,
)

__all__ = [
    "ARTIFACT_IO_SOURCE",
    "Marshaller",
    "all_marshallers",
    "by_name",
    "choose_marshaller",
    "parameter_type",
]

_MAX_EXACT_INT = 2**53  # KFP numbers are protobuf doubles
# KFP parameters travel inside the executor input (command lines, MLMD): bigger JSON values
# go as a JSON artifact instead.
PARAMETER_LIMIT = 8 * 1024


@dataclass(frozen=True)
class Marshaller:
    """One format: its KFP artifact class, emitted functions and the packages they import.

    `safe`: loading never unpickles (npy, Arrow, JSON, npz, native model formats), so a
    tampered artifact can at worst fail to parse. `load_arguments` is appended to the load
    call, e.g. to allow the pickled parts of a frame.
    """

    name: str
    artifact: str | None  # KFP artifact class; None: a typed KFP parameter
    save_function: str
    load_function: str
    source: str
    packages: tuple[str, ...]
    safe: bool
    load_arguments: str = ""

    def save_call(self, artifact: str, value: str) -> str:
        """The component line that writes `value` (an expression) to `artifact`."""
        return f"_kale_write_artifact({artifact}, {self.name!r}, {value}, {self.save_function})"

    def load_call(self, artifact: str, variable: str, producer: str) -> str:
        """The expression that checks and loads the value held by `artifact`."""
        read = f"_kale_read_artifact({artifact}, {variable!r}, {json.dumps(producer)})"
        return f"{self.load_function}({read}{self.load_arguments})"


PARAMETER = Marshaller("parameter", None, "", "", "", (), True)
JSON = Marshaller("json", "Artifact", "_kale_save_json", "_kale_load_json", JSON_SOURCE, (), True)
NPY = Marshaller("npy", "Dataset", "_kale_save_npy", "_kale_load_npy", NPY_SOURCE, ("numpy",), True)
NPZ = Marshaller("npz", "Dataset", "_kale_save_npz", "_kale_load_npz", NPZ_SOURCE, ("scipy",), True)
ARROW = Marshaller(
    "arrow", "Dataset", "_kale_save_arrow", "_kale_load_arrow", ARROW_SOURCE,
    ("pandas", "pyarrow", "cloudpickle"), True,
)  # fmt: skip
# Frames with columns Arrow cannot hold exactly (object columns): those columns pickled.
ARROW_PICKLED = Marshaller(
    "arrow+pickle", "Dataset", "_kale_save_arrow", "_kale_load_arrow", ARROW_SOURCE,
    ("pandas", "pyarrow", "cloudpickle"), False, ", allow_pickle=True",
)  # fmt: skip
JOBLIB = Marshaller(
    "joblib", "Model", "_kale_save_joblib", "_kale_load_joblib", JOBLIB_SOURCE, ("joblib",), False
)
XGBOOST = Marshaller(
    "xgboost", "Model", "_kale_save_xgboost", "_kale_load_xgboost", XGBOOST_SOURCE,
    ("xgboost",), True,
)  # fmt: skip
LIGHTGBM = Marshaller(
    "lightgbm", "Model", "_kale_save_lightgbm", "_kale_load_lightgbm", LIGHTGBM_SOURCE,
    ("lightgbm",), True,
)  # fmt: skip
TORCH_TENSOR = Marshaller(
    "torch-tensor", "Dataset", "_kale_save_torch_tensor", "_kale_load_torch_tensor",
    TORCH_TENSOR_SOURCE, ("torch",), True,
)  # fmt: skip
TORCH_MODULE = Marshaller(
    "torch-module", "Model", "_kale_save_torch_module", "_kale_load_torch_module",
    TORCH_MODULE_SOURCE, ("torch", "cloudpickle"), False,
)  # fmt: skip
CLOUDPICKLE = Marshaller(
    "cloudpickle", "Artifact", "_kale_save_cloudpickle", "_kale_load_cloudpickle",
    CLOUDPICKLE_SOURCE, ("cloudpickle",), False,
)  # fmt: skip

_FRAME_TYPES = {
    "pandas.DataFrame",
    "pandas.core.frame.DataFrame",
    "pandas.Series",
    "pandas.core.series.Series",
}
_TABLE_TYPES = {"pyarrow.Table", "pyarrow.lib.Table"}
_SPARSE_FORMATS = {"csr", "csc", "coo", "bsr", "dia"}  # what scipy.sparse.save_npz writes


# Not chosen by type: the tracer gives files that cross steps this marshaller (PATTERNS 19).
FILE = Marshaller(
    "file", "Artifact", "_kale_keep_file", "_kale_restore_file", FILE_SOURCE, (), True
)


# Not chosen by type either: a global random generator's state crossing steps.
RNG_STATE = Marshaller(
    "rng-state", "Artifact", "_kale_save_rng_state", "_kale_load_rng_state", RNG_STATE_SOURCE,
    (), False,
)  # fmt: skip


def all_marshallers() -> list[Marshaller]:
    return [
        PARAMETER, JSON, NPY, NPZ, ARROW, ARROW_PICKLED, JOBLIB, XGBOOST, LIGHTGBM,
        TORCH_TENSOR, TORCH_MODULE, CLOUDPICKLE, RNG_STATE,
    ]  # fmt: skip


def by_name(name: str) -> Marshaller:
    """The marshaller recorded in dataflow.json or an artifact's metadata."""
    return next(m for m in all_marshallers() if m.name == name)


def _has_int(value: Any) -> bool:
    if type(value) is int:
        return True
    if isinstance(value, list):
        return any(_has_int(v) for v in value)
    if isinstance(value, dict):
        return any(_has_int(v) for v in value.values())
    return False


def parameter_type(info: dict[str, Any]) -> str | None:
    """The KFP parameter type when the value may travel as a typed parameter, else None."""
    if "json" not in info:
        return None
    value = info["json"]
    if len(json.dumps(value)) > PARAMETER_LIMIT:
        return None
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        return "int" if abs(value) <= _MAX_EXACT_INT else None
    if kind is float:
        return "float"
    if kind is str:
        return "str"
    if kind in (list, dict) and not _has_int(value):  # ints in containers come back as floats
        return kind.__name__
    return None


def _holds_objects(info: dict[str, Any]) -> bool:
    """Whether a traced frame has columns of Python objects (or we could not see them all)."""
    if info.get("pickled_parts"):  # the round-trip check saw columns travel pickled
        return True
    dtypes = [info.get("dtype")] if "columns" not in info else [t for _, t in info["columns"]]
    unheld = any(d in (None, "object") or d.startswith("complex") for d in dtypes)
    return unheld or len(info.get("columns", [])) >= 50


def _object_dtype(dtype: str | None) -> bool:
    return dtype in (None, "object") or "'O'" in dtype


def choose_marshaller(info: dict[str, Any]) -> Marshaller:
    """The best format for a value of this traced type."""
    if info.get("kind") == "rng":
        return RNG_STATE
    if parameter_type(info) is not None:
        return PARAMETER
    if "json" in info or info.get("json_exact"):
        return JSON
    mro = info.get("mro", [])
    kind = info.get("type", "")
    if kind == "numpy.ndarray" and not _object_dtype(info.get("dtype")):
        return NPY
    if kind in _FRAME_TYPES:
        return ARROW_PICKLED if _holds_objects(info) else ARROW
    if kind in _TABLE_TYPES:
        return ARROW
    if (
        kind.startswith("scipy.sparse.")
        and kind.rsplit(".", 1)[-1].split("_")[0] in _SPARSE_FORMATS
    ):
        return NPZ
    if "xgboost.core.Booster" in mro:
        return XGBOOST
    if "lightgbm.basic.Booster" in mro:
        return LIGHTGBM
    if kind in ("torch.Tensor", "torch.nn.parameter.Parameter"):
        return TORCH_TENSOR
    if "torch.nn.modules.module.Module" in mro:
        return TORCH_MODULE
    if "sklearn.base.BaseEstimator" in mro:
        return JOBLIB
    return CLOUDPICKLE
