"""Pipeline parameters: read from the parameters cell, overridden papermill-style.

Types come from the values the notebook binds (as papermill does); overrides must match
them, so a pipeline compiled with `-p rows 10` cannot silently turn `rows` into a string.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from papermill.translators import translate_parameters

from kale_trace.errors import KaleTraceError

KFP_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter: its default is what the pipeline is compiled with."""

    name: str
    type: str  # one of KFP_TYPES' values
    default: Any
    sample: Any  # the value the dry run used


def parameter_names(source: str) -> list[str]:
    """Names bound by the parameters cell, in order (the cell is plain assignments)."""
    names: list[str] = []
    for stmt in ast.parse(source).body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        for target in targets:
            for node in ast.walk(target) if target is not None else ():
                if isinstance(node, ast.Name) and node.id not in names:
                    names.append(node.id)
    return names


def kfp_type(name: str, value: Any) -> str:
    """The KFP parameter type for a value bound in the parameters cell."""
    kind = KFP_TYPES.get(type(value))
    if kind is None:
        raise KaleTraceError(
            f"parameter '{name}' is bound to a {type(value).__name__}; pipeline parameters "
            "must be bool, int, float, str, list or dict",
            fix=f"give '{name}' a literal default of one of those types in the parameters cell",
        )
    if kind == "float" and not math.isfinite(value):
        raise KaleTraceError(f"parameter '{name}' is {value}; KFP parameters must be finite")
    return kind


def coerce(name: str, kind: str, value: Any, origin: str) -> Any:
    """Check an override against the parameter's type; ints are accepted for floats."""
    if kind == "float" and type(value) is int:
        return float(value)
    if KFP_TYPES.get(type(value)) != kind:
        raise KaleTraceError(
            f"{origin} gives parameter '{name}' the {type(value).__name__} {value!r}, "
            f"but the notebook's parameters cell makes it a {kind}",
            fix=f"pass a {kind} value for '{name}'",
        )
    return value


def read_values_file(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping of parameter values (`--sample-params`, `-f`)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KaleTraceError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KaleTraceError(
            f"{what} file {path} is not valid YAML: {exc}",
            fix="write a YAML mapping such as `rows: 100`",
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise KaleTraceError(
            f"{what} file {path} must be a YAML mapping of parameter names to values",
            fix="write a YAML mapping such as `rows: 100`",
        )
    return data


def parse_cli_value(text: str) -> Any:
    """`-p NAME VALUE`: the value is read as a YAML scalar, as papermill does."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def check_known(values: dict[str, Any], known: list[str], origin: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        listing = ", ".join(known) if known else "(the notebook has no parameters cell)"
        raise KaleTraceError(
            f"{origin} names unknown parameter(s): {', '.join(unknown)}",
            fix=f"use the names bound in the parameters cell: {listing}",
        )


def injection_source(values: dict[str, Any]) -> str:
    """The papermill-style cell that re-binds parameters after the parameters cell."""
    return translate_parameters(
        "python3", "python", values, comment="Parameters injected by kale-trace"
    )
