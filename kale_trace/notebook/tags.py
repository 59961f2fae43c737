"""Kale's tag language, parsed per cell (DESIGN §2), as every Kale release wrote it.

Existing Kale notebooks must work unchanged, so every tag any Kale release or papermill
wrote is understood: `block:a;b` (a cell in two steps), `prev:a;b` and the 2019 `prev:a:b`,
an empty `step:`, `skip` beside other tags (skip wins), a special tag beside step tags (the
special tag wins, as in Kale), Kale's old `in:`/`out:`. Tags other tools write
(jupyter-book, nbval, papermill) are left alone. A tag that looks like ours but is not
(`stpe:b`) is an error naming the cell, never silently ignored.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.model import CellRole, SecretRef
from kale_trace.notebook.settings import (
    check_annotation,
    check_image,
    check_label,
    check_limit,
    parse_secret,
)

_SPECIAL = {
    "imports": CellRole.IMPORTS,
    "functions": CellRole.FUNCTIONS,
    "pipeline-parameters": CellRole.PARAMETERS,
    "parameters": CellRole.PARAMETERS,
    "pipeline-metrics": CellRole.METRICS,
}
# Tags of other tools that mean nothing to a pipeline: jupyter-book / nbconvert display
# tags, nbval's, nbclient's `raises-exception` (honoured by the dry run and the steps).
FOREIGN_TAGS = {
    "raises-exception", "skip-execution", "hide-input", "hide-output", "hide-cell",
    "remove-input", "remove-output", "remove-cell", "remove_cell", "remove_input",
    "remove_output", "hide_input", "hide_output", "full-width", "margin", "popout",
    "thebe-init", "output_scroll", "scroll-output", "nbval-ignore-output", "nbval-skip",
    "nbval-raises-exception", "nbval-check-output", "nbval-skip-output", "hide", "remove",
    "toc", "collapsed", "injected-parameters",
}  # fmt: skip
VALID_TAGS = (
    "imports, functions, pipeline-parameters, parameters, pipeline-metrics, skip, "
    "step:<name>, block:<name>[;<name>...], prev:<name>[;<name>...], "
    "limit:<resource>:<value>, image:<ref>, label:<key>:<value>, annotation:<key>:<value>, "
    "secret:<name>:<key>:<ENV_VAR>, secret:<name>:<mount path>, cache:enabled|disabled, "
    "retries:<n>, report:true|false, notebook:<name>, raises-exception"
)
_TRUE = {"true", "yes", "on", "enabled", "1"}
_FALSE = {"false", "no", "off", "disabled", "0"}


@dataclass
class CellTags:
    """What one cell's tags say."""

    role: CellRole | None = None  # a special role, STEP, or None: untagged
    skip: bool = False  # `skip`: the cell does not run (it wins over every other tag)
    injected: bool = False  # papermill's injected-parameters cell: we inject our own
    steps: list[str] = field(default_factory=list)  # step names as written
    prev: list[str] = field(default_factory=list)  # step names as written
    limits: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: list[SecretRef] = field(default_factory=list)
    cache: bool | None = None
    retries: int | None = None
    report: bool | None = None
    notebook: str | None = None  # `notebook:<name>`: the cell stands for another notebook
    ignored: list[str] = field(default_factory=list)  # tags that lost to a special tag
    unknown: list[str] = field(default_factory=list)  # plain words no tool here knows

    @property
    def has_step_settings(self) -> bool:
        return bool(
            self.prev or self.limits or self.labels or self.annotations or self.secrets
        ) or any(v is not None for v in (self.image, self.cache, self.retries, self.report))


def parse_tags(tags: list[object]) -> CellTags:
    """Parse one cell's tags; raises KaleTraceError (without location) on a bad tag."""
    texts = [_text(tag) for tag in tags]
    texts = [t for t in texts if t]
    if "skip" in texts:
        return CellTags(skip=True)
    parsed = CellTags(injected="injected-parameters" in texts)
    special = [t for t in texts if t in _SPECIAL]
    if special:
        parsed.role = _SPECIAL[special[0]]
        parsed.ignored = [t for t in texts if t != special[0] and t not in FOREIGN_TAGS]
        return parsed
    for tag in texts:
        _parse_one(parsed, tag)
    if parsed.notebook is not None and (parsed.steps or parsed.has_step_settings):
        raise KaleTraceError(
            f"'notebook:{parsed.notebook}' stands for another notebook, so the cell cannot also "
            "be a step or carry step settings",
            fix="keep notebook:<name> alone on the cell; set step tags in the referenced notebook",
        )
    if parsed.steps:
        parsed.role = CellRole.STEP
    return parsed


def _text(tag: object) -> str:
    if not isinstance(tag, str):
        raise KaleTraceError(f"tag {tag!r} is not a string", fix=f"valid tags: {VALID_TAGS}")
    return tag.strip()


def _parse_one(parsed: CellTags, tag: str) -> None:
    if tag in FOREIGN_TAGS:
        return
    prefix, colon, value = tag.partition(":")
    handler = _HANDLERS.get(prefix) if colon else None
    if handler is not None:
        handler(parsed, value, tag)
    elif colon:
        raise KaleTraceError(f"unknown tag {tag!r}", fix=f"valid tags: {VALID_TAGS}")
    else:
        parsed.unknown.append(tag)


def _names(value: str, separators: str) -> list[str]:
    return [name.strip() for name in re.split(f"[{separators}]", value) if name.strip()]


def _step(parsed: CellTags, value: str, tag: str) -> None:
    for name in _names(value, ";"):  # an empty step:/block: acts as untagged
        if name not in parsed.steps:
            parsed.steps.append(name)


def _prev(parsed: CellTags, value: str, tag: str) -> None:
    names = _names(value, ";:")
    if not names:
        raise KaleTraceError("empty prev: tag", fix="write prev:<step name>")
    parsed.prev.extend(n for n in names if n not in parsed.prev)


def _limit(parsed: CellTags, value: str, tag: str) -> None:
    resource, sep, amount = value.rpartition(":")
    if not sep or not resource or not amount:
        raise KaleTraceError(f"bad tag {tag!r}", fix="write limit:<resource>:<value>")
    resource, amount = check_limit(resource, amount)
    parsed.limits[resource] = amount


def _image(parsed: CellTags, value: str, tag: str) -> None:
    if not value:
        raise KaleTraceError("empty image: tag", fix="write image:<registry/name:tag>")
    parsed.image = check_image(value, "image:")


def _metadata_tag(kind: str) -> Callable[[CellTags, str, str], None]:
    def handle(parsed: CellTags, value: str, tag: str) -> None:
        key, sep, text = value.partition(":")
        if not sep or not key:
            raise KaleTraceError(f"bad tag {tag!r}", fix=f"write {kind}:<key>:<value>")
        (check_label if kind == "label" else check_annotation)(key, text)
        (parsed.labels if kind == "label" else parsed.annotations)[key] = text

    return handle


def _secret(parsed: CellTags, value: str, tag: str) -> None:
    secret = parse_secret(value)
    if secret not in parsed.secrets:
        parsed.secrets.append(secret)


def _cache(parsed: CellTags, value: str, tag: str) -> None:
    if value not in ("enabled", "disabled"):
        raise KaleTraceError(f"bad tag {tag!r}", fix="write cache:enabled or cache:disabled")
    parsed.cache = value == "enabled"


def _retries(parsed: CellTags, value: str, tag: str) -> None:
    if not re.fullmatch(r"[0-9]{1,3}", value):
        raise KaleTraceError(f"bad tag {tag!r}", fix="write retries:<n>, e.g. retries:2")
    parsed.retries = int(value)


def _report(parsed: CellTags, value: str, tag: str) -> None:
    word = value.strip().lower()
    if word not in _TRUE | _FALSE:
        raise KaleTraceError(f"bad tag {tag!r}", fix="write report:true or report:false")
    parsed.report = word in _TRUE


def _notebook(parsed: CellTags, value: str, tag: str) -> None:
    """Kale 2.3's composition: this cell stands for another notebook (its `notebook_path`)."""
    if not value.strip():
        raise KaleTraceError(f"bad tag {tag!r}", fix="write notebook:<name>, e.g. notebook:train")
    parsed.notebook = value.strip()


def _old_dataflow(parsed: CellTags, value: str, tag: str) -> None:
    """Kale's 2019 `in:`/`out:` named variables by hand; the dry run observes them."""


_HANDLERS: dict[str, Callable[[CellTags, str, str], None]] = {
    "step": _step,
    "block": _step,
    "prev": _prev,
    "limit": _limit,
    "image": _image,
    "label": _metadata_tag("label"),
    "annotation": _metadata_tag("annotation"),
    "secret": _secret,
    "cache": _cache,
    "retries": _retries,
    "report": _report,
    "notebook": _notebook,
    "in": _old_dataflow,
    "out": _old_dataflow,
}


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
