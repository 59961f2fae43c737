"""How each type family crosses a step, chosen at compile time from the traced type.

Each marshaller carries the source of its save and load functions: code generation pastes
into a component only the ones its own inputs and outputs need, so generated pipelines
import nothing from kale-trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kale_trace.marshal.sources import (
    CLOUDPICKLE_SOURCE,
    JOBLIB_SOURCE,
    JSON_SOURCE,
    NPY_SOURCE,
    PARQUET_SOURCE,
)

_MAX_EXACT_INT = 2**53  # KFP numbers are protobuf doubles


@dataclass(frozen=True)
class Marshaller:
    name: str
    artifact: str | None  # KFP artifact class; None: a typed KFP parameter
    save_function: str
    load_function: str
    source: str
    packages: tuple[str, ...]


PARAMETER = Marshaller("parameter", None, "", "", "", ())
JSON = Marshaller("json", "Artifact", "_kale_save_json", "_kale_load_json", JSON_SOURCE, ())
NPY = Marshaller("npy", "Dataset", "_kale_save_npy", "_kale_load_npy", NPY_SOURCE, ("numpy",))
PARQUET = Marshaller(
    "parquet", "Dataset", "_kale_save_parquet", "_kale_load_parquet", PARQUET_SOURCE,
    ("pandas", "pyarrow", "cloudpickle"),
)  # fmt: skip
JOBLIB = Marshaller(
    "joblib", "Model", "_kale_save_joblib", "_kale_load_joblib", JOBLIB_SOURCE, ("joblib",)
)
CLOUDPICKLE = Marshaller(
    "cloudpickle", "Artifact", "_kale_save_cloudpickle", "_kale_load_cloudpickle",
    CLOUDPICKLE_SOURCE, ("cloudpickle",),
)  # fmt: skip


def all_marshallers() -> list[Marshaller]:
    return [PARAMETER, JSON, NPY, PARQUET, JOBLIB, CLOUDPICKLE]


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


def choose_marshaller(info: dict[str, Any]) -> Marshaller:
    """The best format for a value of this traced type."""
    if parameter_type(info) is not None:
        return PARAMETER
    if "json" in info:
        return JSON
    mro = info.get("mro", [])
    kind = info.get("type", "")
    if kind == "numpy.ndarray" and info.get("dtype") not in (None, "object"):
        return NPY
    if kind in (
        "pandas.DataFrame",
        "pandas.core.frame.DataFrame",
        "pandas.Series",
        "pandas.core.series.Series",
    ):
        return PARQUET
    if "sklearn.base.BaseEstimator" in mro:
        return JOBLIB
    return CLOUDPICKLE
