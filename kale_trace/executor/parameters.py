"""Pipeline parameters: read from the parameters cell, overridden papermill-style.

Types come from the values the notebook binds (as papermill does); overrides must match
them, so a pipeline compiled with `-p rows 10` cannot silently turn `rows` into a string.

A parameter bound to None has no KFP type, and KFP's `Optional[...] = None` parameters
fail both in kfp.local and on the KFP backend (kubeflow/pipelines#11667). So:
- an override (-p/-f) with a value types it, and that value is its default;
- otherwise it is *optional*: a KFP `str` parameter holding JSON text, default "null".
  The component decodes it (`null` → None, `42` → 42, `[1, 2]` → a list; text that is not
  JSON stays text), so a run can still pass any value, and None stays None.
"""

from __future__ import annotations

import ast
import math
import re
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
    optional: bool = False  # None in the notebook: travels as JSON text (see module doc)

    @property
    def kfp_default(self) -> Any:
        """The default written into the pipeline signature."""
        return "null" if self.optional else self.default


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
    _check_yaml_text(name, value)
    return kind


# KFP writes parameter defaults into the pipeline's YAML raw, and a character YAML cannot
# hold (most control characters) makes the file unreadable: PyYAML's own reader says which.
_NOT_YAML = yaml.reader.Reader.NON_PRINTABLE


def _check_yaml_text(name: str, value: Any) -> None:
    texts = [value] if isinstance(value, str) else []
    if isinstance(value, list):
        texts = [v for v in value if isinstance(v, str)]
    elif isinstance(value, dict):
        texts = [t for pair in value.items() for t in pair if isinstance(t, str)]
    for text in texts:
        if found := _NOT_YAML.search(text):
            raise KaleTraceError(
                f"parameter '{name}' holds the control character {found.group()!r}, which "
                "a KFP pipeline file cannot hold",
                fix=f"remove it from the value of '{name}' (or pass the text another way)",
            )


class CliText(str):
    """A `-p NAME VALUE` value as typed: read as YAML once the parameter's type is known.

    So `-p name yes` keeps the text "yes" for a str parameter (YAML alone would make it
    True), while `-p rows 10` is the int 10 and `-p ratio 1e-3` the float 0.001.
    """


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def resolve_cli_text(value: Any, kind: str | None) -> Any:
    """The typed value of an override; only `CliText` needs resolving."""
    if not isinstance(value, CliText):
        return value
    text = str(value)
    if kind == "str":
        parsed = _yaml_scalar(text)
        return parsed if isinstance(parsed, str) else text
    parsed = _yaml_scalar(text)
    if isinstance(parsed, str) and _FLOAT.match(text.strip()):
        return float(text)  # YAML 1.1 reads 1e-3 as a string
    return parsed


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(name: str, kind: str, value: Any, origin: str) -> Any:
    """Check an override against the parameter's type; ints are accepted for floats."""
    value = resolve_cli_text(value, kind)
    if kind == "float" and type(value) is int:
        return float(value)
    if KFP_TYPES.get(type(value)) != kind:
        raise KaleTraceError(
            f"{origin} gives parameter '{name}' the {type(value).__name__} {value!r}, "
            f"but the notebook's parameters cell makes it {_article(kind)} {kind}",
            fix=f"pass {_article(kind)} {kind} value for '{name}'",
        )
    _check_yaml_text(name, value)
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
    """`-p NAME VALUE`: read as a YAML scalar once the parameter's type is known."""
    return CliText(text)


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


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
