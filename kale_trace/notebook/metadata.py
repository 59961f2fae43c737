"""The `kubeflow_notebook` metadata, as every Kale release wrote it, checked once.

Notebooks outlive tools: a key no release knows is a warning, not an error, and keys that
need what KFP v2 does not have (Rok snapshots, Katib) are left out with a warning that
says why. What does shape the pipeline is validated here, so the error names the key.
"""

from __future__ import annotations

import re
from typing import Any

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.model import Note, PipelineConfig, StepSettings
from kale_trace.notebook.settings import check_image, parse_volumes
from kale_trace.notebook.tags import CellTags, parse_tags

_USED = {
    "pipeline_name", "pipeline_description", "experiment_name", "experiment", "base_image",
    "docker_image", "volumes", "storage_class_name", "volume_access_mode", "steps_defaults",
    "enable_caching", "timeout", "security_context", "kfp_host",
}  # fmt: skip
# Keys Kale wrote that mean nothing without Rok or Katib, or only to Kale itself.
_ROK = {"autosnapshot", "snapshot_volumes"}
_KATIB = {"katib_run", "katib_metadata"}
_KALE_INTERNAL = {"abs_working_dir", "marshal_volume", "marshal_path", "notebook_path"}
_SECURITY_KEYS = {
    "run_as_user": "run_as_user", "runAsUser": "run_as_user",
    "run_as_group": "run_as_group", "runAsGroup": "run_as_group",
    "run_as_non_root": "run_as_non_root", "runAsNonRoot": "run_as_non_root",
}  # fmt: skip
MAX_PIPELINE_NAME = 100  # KFP allows 128; file names and task names need room


def read_config(raw: Any, stem: str) -> tuple[PipelineConfig, list[Note]]:
    """Check `kubeflow_notebook`; raises KaleTraceError (without the notebook) on bad input."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise KaleTraceError(
            f"the notebook's kubeflow_notebook metadata is a {type(raw).__name__}, not a mapping",
            fix="edit the notebook metadata so kubeflow_notebook is a JSON object, or remove it",
        )
    notes = _ignored_keys(raw)
    volumes, volume_notes = parse_volumes(raw)
    name, name_notes = pipeline_name(raw.get("pipeline_name") or stem)
    config = PipelineConfig(
        name=name,
        description=_text(raw, "pipeline_description"),
        experiment=_text(raw, "experiment_name") or _old_experiment(raw.get("experiment")),
        base_image=_image(raw),
        volumes=volumes,
        enable_caching=_flag(raw, "enable_caching"),
        timeout=_timeout(raw.get("timeout")),
        security_context=_security_context(raw.get("security_context")),
        step_defaults=_step_defaults(raw.get("steps_defaults")),
    )
    return config, notes + volume_notes + name_notes


def _ignored_keys(raw: dict[str, Any]) -> list[Note]:
    messages = []
    if raw.get("katib_run"):
        messages.append(
            "kubeflow_notebook.katib_run is ignored: Katib tuning of a Kale pipeline needs "
            "Kale's Katib integration; the pipeline runs once with the parameters' defaults"
        )
    rok = sorted(k for k in _ROK if raw.get(k))
    if rok:
        messages.append(
            f"kubeflow_notebook.{', '.join(rok)} ignored: Rok snapshots need MiniKF's Rok, "
            "which KFP v2 has no equivalent of"
        )
    unknown = sorted(set(raw) - _USED - _ROK - _KATIB - _KALE_INTERNAL)
    if unknown:
        messages.append(f"unknown kubeflow_notebook key(s) ignored: {', '.join(unknown)}")
    return [Note(message, warning=True) for message in messages]


def pipeline_name(raw: Any) -> tuple[str, list[Note]]:
    """A KFP pipeline name (lower-case letters, digits and '-') from the metadata or file."""
    name = re.sub(r"[^a-z0-9]+", "-", str(raw).lower()).strip("-")
    if not name:
        raise KaleTraceError(
            f"pipeline name {raw!r} has no letters or digits",
            fix="set kubeflow_notebook.pipeline_name in the notebook metadata",
        )
    if len(name) <= MAX_PIPELINE_NAME:
        return name, []
    short = name[:MAX_PIPELINE_NAME].rstrip("-")
    message = f"the pipeline name has {len(name)} characters; it is cut to {len(short)}: {short}"
    return short, [Note(message, warning=True)]


def _text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise KaleTraceError(
            f"kubeflow_notebook.{key} is {value!r}, not a string", fix=f"write {key} as text"
        )
    return value


def _old_experiment(value: Any) -> str | None:
    """Kale's UI also writes `experiment: {"id": ..., "name": ...}`."""
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) and name else None


def _image(raw: dict[str, Any]) -> str | None:
    for key in ("base_image", "docker_image"):  # docker_image: Kale's name for it
        if raw.get(key):
            return check_image(raw[key], f"kubeflow_notebook.{key}")
    return None


def _flag(raw: dict[str, Any], key: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise KaleTraceError(f"kubeflow_notebook.{key} is {value!r}", fix="set it to true or false")
    return value


def _timeout(value: Any) -> int | None:
    if value in (None, 0):
        return None
    if type(value) is not int or value < 0:
        raise KaleTraceError(
            f"kubeflow_notebook.timeout is {value!r}", fix="give a whole number of seconds"
        )
    return value


def _security_context(value: Any) -> tuple[tuple[str, int | bool], ...]:
    """The fields kfp-kubernetes can set: run_as_user, run_as_group, run_as_non_root."""
    if value in (None, {}):
        return ()
    if not isinstance(value, dict) or not set(value) <= set(_SECURITY_KEYS):
        raise KaleTraceError(
            f"kubeflow_notebook.security_context is {value!r}",
            fix="write a mapping of run_as_user, run_as_group and run_as_non_root",
        )
    found: dict[str, int | bool] = {}
    for key, item in value.items():
        field = _SECURITY_KEYS[key]
        wanted = bool if field == "run_as_non_root" else int
        if type(item) is not wanted or (wanted is int and item < 0):
            raise KaleTraceError(
                f"kubeflow_notebook.security_context.{key} is {item!r}",
                fix=f"give {'true or false' if wanted is bool else 'a user or group id'}",
            )
        found[field] = item
    return tuple(sorted(found.items()))


def _step_defaults(value: Any) -> StepSettings:
    """`steps_defaults`: a list of step tags (Kale's UI), or Kale's parsed mapping."""
    if value in (None, [], {}):
        return StepSettings()
    if isinstance(value, dict):
        value = _tags_of_mapping(value)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise KaleTraceError(
            "kubeflow_notebook.steps_defaults must be a list of step tags",
            fix='write e.g. "steps_defaults": ["label:team:ml", "limit:memory:4Gi"]',
        )
    try:
        tags = parse_tags(value)
    except KaleTraceError as error:
        error.message = f"kubeflow_notebook.steps_defaults: {error.message}"
        raise
    if tags.role is not None or tags.skip or tags.steps or tags.prev:
        raise KaleTraceError(
            "kubeflow_notebook.steps_defaults may only hold limit:, label:, annotation:, "
            "secret:, image:, cache:, retries: and report: tags",
            fix="tag steps and their order on the cells themselves",
        )
    return settings_of(tags)


def _tags_of_mapping(value: dict[str, Any]) -> Any:
    tags = []
    for kind, prefix in (("limits", "limit"), ("labels", "label"), ("annotations", "annotation")):
        items = value.get(kind) or {}
        if not isinstance(items, dict):
            return None
        tags += [f"{prefix}:{k}:{v}" for k, v in items.items()]
    return tags if set(value) <= {"limits", "labels", "annotations"} else None


def settings_of(tags: CellTags, base: StepSettings | None = None) -> StepSettings:
    """A step's settings: its own tags over `base` (the notebook's steps_defaults)."""
    base = base or StepSettings()
    return StepSettings(
        limits={**base.limits, **tags.limits},
        image=tags.image or base.image,
        labels={**base.labels, **tags.labels},
        annotations={**base.annotations, **tags.annotations},
        secrets=tuple(dict.fromkeys([*base.secrets, *tags.secrets])),
        cache=base.cache if tags.cache is None else tags.cache,
        retries=base.retries if tags.retries is None else tags.retries,
        report=base.report if tags.report is None else tags.report,
    )
