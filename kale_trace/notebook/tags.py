"""Kale's tag language, parsed per cell (DESIGN §2).

Existing Kale notebooks must work unchanged, so every tag Kale and papermill write is
understood; anything else is an error naming the cell, never silently ignored.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.model import CellRole
from kale_trace.notebook.settings import (
    check_annotation,
    check_image,
    check_label,
    check_limit,
    parse_secret,
)

_ROLE_TAGS = {
    "imports": CellRole.IMPORTS,
    "functions": CellRole.FUNCTIONS,
    "pipeline-parameters": CellRole.PARAMETERS,
    "parameters": CellRole.PARAMETERS,
    "pipeline-metrics": CellRole.METRICS,
    "skip": CellRole.SKIP,
    "injected-parameters": CellRole.INJECTED,
}
_IGNORED = {"raises-exception"}
_IGNORED_PREFIXES = ("in:", "out:")  # Kale's old explicit dataflow tags: the trace knows better
VALID_TAGS = (
    "imports, functions, pipeline-parameters, parameters, pipeline-metrics, skip, "
    "step:<name>, block:<name>, prev:<name>, limit:<resource>:<value>, image:<ref>, "
    "label:<key>:<value>, annotation:<key>:<value>, secret:<name>:<key>:<ENV_VAR>, "
    "secret:<name>:<mount path>, cache:enabled|disabled, "
    "retries:<n>, raises-exception"
)


@dataclass
class CellTags:
    """What one cell's tags say."""

    role: CellRole | None = None  # None: untagged, continues the cell above
    step: str | None = None  # display name as written
    prev: list[str] = field(default_factory=list)  # display names as written
    limits: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    cache: bool | None = None
    retries: int | None = None


def parse_tags(tags: list[str]) -> CellTags:
    """Parse one cell's tags; raises KaleTraceError (without location) on a bad tag."""
    parsed = CellTags()
    for raw in tags:
        if not isinstance(raw, str):
            raise KaleTraceError(f"tag {raw!r} is not a string", fix=f"valid tags: {VALID_TAGS}")
        tag = raw.strip()
        if tag in _ROLE_TAGS:
            _set_role(parsed, _ROLE_TAGS[tag], tag)
        elif tag in _IGNORED or tag.startswith(_IGNORED_PREFIXES) or not tag:
            continue
        elif tag.startswith(("step:", "block:")):
            name = tag.split(":", 1)[1].strip()
            if not name:
                continue  # an empty step:/block: tag acts as untagged
            if parsed.step is not None and parsed.step != name:
                raise KaleTraceError(
                    f"the cell is tagged with two steps: {parsed.step!r}, {name!r}",
                    fix="keep one step:<name> tag per cell",
                )
            _set_role(parsed, CellRole.STEP, tag)
            parsed.step = name
        elif tag.startswith("prev:"):
            name = tag[5:].strip()
            if not name:
                raise KaleTraceError("empty prev: tag", fix="write prev:<step name>")
            parsed.prev.append(name)
        elif tag.startswith("limit:"):
            parts = tag.split(":")
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise KaleTraceError(f"bad tag {tag!r}", fix="write limit:<resource>:<value>")
            resource, value = check_limit(parts[1], parts[2])
            parsed.limits[resource] = value
        elif tag.startswith("image:"):
            if not tag[6:]:
                raise KaleTraceError("empty image: tag", fix="write image:<registry/name:tag>")
            parsed.image = check_image(tag[6:], "image:")
        elif tag.startswith(("label:", "annotation:")):
            kind, _, rest = tag.partition(":")
            key, sep, value = rest.partition(":")
            if not sep or not key:
                raise KaleTraceError(f"bad tag {tag!r}", fix=f"write {kind}:<key>:<value>")
            (check_label if kind == "label" else check_annotation)(key, value)
            (parsed.labels if kind == "label" else parsed.annotations)[key] = value
        elif tag.startswith("secret:"):
            parse_secret(tag[7:])  # validated here, emitted by codegen
            parsed.secrets.append(tag[7:])
        elif tag.startswith("cache:"):
            value = tag[6:]
            if value not in ("enabled", "disabled"):
                raise KaleTraceError(
                    f"bad tag {tag!r}", fix="write cache:enabled or cache:disabled"
                )
            parsed.cache = value == "enabled"
        elif tag.startswith("retries:"):
            if not tag[8:].isdigit():
                raise KaleTraceError(f"bad tag {tag!r}", fix="write retries:<n>, e.g. retries:2")
            parsed.retries = int(tag[8:])
        else:
            raise KaleTraceError(f"unknown tag {tag!r}", fix=f"valid tags: {VALID_TAGS}")
    if parsed.role not in (None, CellRole.STEP, CellRole.FUNCTIONS) and parsed.prev:
        raise KaleTraceError("prev: tags belong on step cells", fix="move the prev: tag to a step")
    return parsed


def _set_role(parsed: CellTags, role: CellRole, tag: str) -> None:
    if parsed.role is not None and parsed.role is not role:
        raise KaleTraceError(
            f"the cell has conflicting tags ({parsed.role.value} and {tag})",
            fix="give each cell one of imports, functions, parameters, pipeline-metrics, "
            "skip or step:<name>",
        )
    parsed.role = role


_INVALID_RUN = re.compile(r"[^a-z0-9_]+")


def normalise_step_name(name: str) -> str:
    """`data-loading` → `data_loading`: a Python identifier and a valid KFP component name."""
    normal = _INVALID_RUN.sub("_", name.strip().lower()).strip("_")
    if normal and normal[0].isdigit():
        normal = f"step_{normal}"
    if not normal or not normal.isidentifier() or len(normal) > 63:
        raise KaleTraceError(
            f"step name {name!r} cannot be made a valid pipeline step name",
            fix="use letters, digits, '-' and '_' (at most 63 characters), e.g. step:load-data",
        )
    if keyword.iskeyword(normal):
        normal = f"{normal}_step"
    return normal
