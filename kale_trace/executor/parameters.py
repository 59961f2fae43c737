"""Pipeline parameters: read from the parameters cell, overridden papermill-style.

Types come from the values the notebook binds (as papermill does); overrides must match
them, so a pipeline compiled with `-p rows 10` cannot silently turn `rows` into a string.

Some values do not survive KFP's own parameter types, so they travel as JSON text in a
KFP `str` parameter that the component decodes (`_kale_json_parameter`):
- lists and dicts: KFP carries them as protobuf structs, whose numbers are all doubles, so
  `[1, 2]` would arrive as `[1.0, 2.0]`;
- ints beyond 2**53, which a double cannot hold exactly;
- a parameter bound to None, which has no KFP type (KFP's `Optional[...] = None`
  parameters fail in kfp.local and on the backend, kubeflow/pipelines#11667): an override
  with a value types it; otherwise it is *optional*, default "null", and the component
  decodes any JSON a run passes (text that is not JSON stays text).
"""

from __future__ import annotations

import json
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
    def json_text(self) -> bool:
        """Travels as JSON text in a KFP str parameter (see the module doc)."""
        big = self.type == "int" and abs(self.default) > MAX_EXACT_INT
        return self.optional or self.type in ("list", "dict") or big

    @property
    def kfp_type(self) -> str:
        return "str" if self.json_text else self.type

    @property
    def kfp_default(self) -> Any:
        """The default written into the pipeline signature."""
        return json.dumps(self.default) if self.json_text else self.default


MAX_EXACT_INT = 2**53  # KFP parameter numbers are doubles


def type_of(name: str, value: Any) -> str:
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
    """Lists and dicts travel as JSON text (ASCII); a str default is written as it is."""
    if not isinstance(value, str):
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise KaleTraceError(
            f"parameter '{name}' holds a lone surrogate character, which no file can hold",
            fix=f"remove it from the value of '{name}'",
        ) from None
    for text in (value,):
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


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def resolve_cli_text(value: Any, kind: str | None) -> Any:
    """The typed value of an override; only `CliText` needs resolving."""
    if not isinstance(value, CliText):
        return value
    text = str(value)
    if kind == "str":
        parsed = _yaml_scalar(text)
        return parsed if isinstance(parsed, str) else text
    parsed = _yaml_scalar(text)
    if isinstance(parsed, str) and _FLOAT.fullmatch(text.strip()):
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


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few hundred bytes of aliases can expand to
    gigabytes (a "billion laughs"), and no parameter file needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"an alias (*{event.anchor}) at line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


MAX_VALUES_FILE = 10 * 1024 * 1024


def read_values_file(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping of parameter values (`--sample-params`, `-f`), bounded in size."""
    try:
        size = path.stat().st_size
        if size > MAX_VALUES_FILE:
            raise KaleTraceError(
                f"{what} file {path} is {size // 1024 // 1024} MB; kale-trace reads at most 10 MB",
                fix="pass large inputs as files the notebook reads, not as parameters",
            )
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506
    except OSError as exc:
        raise KaleTraceError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise KaleTraceError(
            f"{what} file {path} is not UTF-8 text", fix="save it as UTF-8"
        ) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, yaml.YAMLError) else "nested too deep"
        raise KaleTraceError(
            f"{what} file {path} is not valid YAML for kale-trace: {reason}",
            fix="write a plain YAML mapping such as `rows: 100` (no anchors or aliases)",
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


def check_known(values: dict[str, Any], known: list[str], origin: str, cell: bool = True) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        listing = ", ".join(known) if known else "(the parameters cell binds no literal)"
        if not cell:
            listing = "(the notebook has no parameters cell)"
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
