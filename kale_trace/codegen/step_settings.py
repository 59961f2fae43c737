"""Kale's per-step settings as statements of the generated pipeline function.

Resources, retries and caching go through the KFP task API; labels, annotations, secrets
and volumes through kfp-kubernetes (`from kfp import kubernetes`). The tags were validated
when the notebook was read (`kale_trace.notebook.settings`); here every value still goes
through `value_literal`, so no tag can put code into the module.

A local run (kfp.local) gets only what it honours, caching and retries: pod labels,
resource limits, Secrets and volumes mean nothing to a subprocess on this machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kale_trace.codegen.literals import value_literal
from kale_trace.notebook.model import Notebook, StepSettings


@dataclass(frozen=True)
class PipelineSettings:
    """What every step shares: volumes, the caching default, the kubernetes module name."""

    kubernetes: str | None  # the name `kfp.kubernetes` is imported as; None: not needed
    setup: list[str] = field(default_factory=list)  # statements before the first task
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (pvc name expr, mount path)
    cache_default: bool | None = None  # False when kubeflow_notebook.enable_caching is false
    local: bool = False  # rendering for kfp.local: caching and retries only
    env: list[tuple[str, str]] = field(default_factory=list)  # volumes exposed as env vars
    timeout: int | None = None  # kubeflow_notebook.timeout, on every step
    security_context: tuple[tuple[str, int | bool], ...] = ()


def pipeline_settings(
    notebook: Notebook, take_name: Callable[..., str], *, local: bool
) -> PipelineSettings:
    """Shared settings; `take_name(preferred, *fallbacks)` allocates module-level names."""
    # Like Kale, the notebook-wide switch only matters when it turns caching off.
    config = notebook.config
    cache_default = False if config.enable_caching is False else None
    if local:
        return PipelineSettings(kubernetes=None, cache_default=cache_default, local=True)
    volumes = config.volumes
    needs_kubernetes = (
        bool(volumes or config.timeout or config.security_context)
        or any(s.settings.labels or s.settings.annotations or s.settings.secrets
               for s in notebook.steps)
    )  # fmt: skip
    k8s = take_name("kubernetes", "kfp_kubernetes") if needs_kubernetes else None
    setup: list[str] = []
    mounts: list[tuple[str, str]] = []
    for volume in volumes:
        if volume.kind == "pvc":
            mounts.append((value_literal(volume.name), value_literal(volume.mount_path)))
            continue
        variable = take_name(f"{_identifier(volume.name)}_pvc")
        arguments = [
            f"pvc_name_suffix={value_literal('-' + volume.name)}",
            f"access_modes={value_literal([volume.access_mode])}",
            f"size={value_literal(volume.size)}",
        ]
        if volume.storage_class:
            arguments.append(f"storage_class_name={value_literal(volume.storage_class)}")
        if volume.annotations:
            arguments.append(f"annotations={value_literal(dict(volume.annotations))}")
        setup.append(f"{variable} = {k8s}.CreatePVC({', '.join(arguments)})")
        setup.append(
            f"{variable}.set_display_name({value_literal('create volume ' + volume.name)})"
        )
        # A cached CreatePVC would hand this run the claim of an earlier one.
        setup.append(f"{variable}.set_caching_options(False)")
        mounts.append((f"{variable}.outputs['name']", value_literal(volume.mount_path)))
    env = [(v.env_var, v.mount_path) for v in volumes if v.env_var]
    return PipelineSettings(
        k8s, setup, mounts, cache_default, env=env, timeout=config.timeout,
        security_context=config.security_context,
    )  # fmt: skip


def task_settings(task: str, settings: StepSettings, shared: PipelineSettings) -> list[str]:
    """Statements applying one step's settings to its task variable, in a fixed order."""
    lines: list[str] = []
    if not shared.local:
        for resource, value in settings.limits.items():
            if resource == "cpu":
                lines.append(f"{task}.set_cpu_limit({value_literal(value)})")
            elif resource == "memory":
                lines.append(f"{task}.set_memory_limit({value_literal(value)})")
            else:
                lines.append(
                    f"{task}.set_accelerator_type({value_literal(resource)})"
                    f".set_accelerator_limit({value_literal(value)})"
                )
    if settings.retries:
        lines.append(f"{task}.set_retry(num_retries={value_literal(settings.retries)})")
    cache = settings.cache if settings.cache is not None else shared.cache_default
    if cache is not None:
        lines.append(f"{task}.set_caching_options({value_literal(cache)})")
    k8s = shared.kubernetes
    if k8s is None:
        return lines
    for key, value in settings.labels.items():
        lines.append(f"{k8s}.add_pod_label({task}, {value_literal(key)}, {value_literal(value)})")
    for key, value in settings.annotations.items():
        lines.append(
            f"{k8s}.add_pod_annotation({task}, {value_literal(key)}, {value_literal(value)})"
        )
    for secret in settings.secrets:
        if secret.env is not None:
            lines.append(
                f"{k8s}.use_secret_as_env({task}, secret_name={value_literal(secret.name)}, "
                f"secret_key_to_env={value_literal({secret.key: secret.env})})"
            )
        else:
            lines.append(
                f"{k8s}.use_secret_as_volume({task}, secret_name={value_literal(secret.name)}, "
                f"mount_path={value_literal(secret.mount_path)})"
            )
    for pvc, mount_path in shared.mounts:
        lines.append(f"{k8s}.mount_pvc({task}, pvc_name={pvc}, mount_path={mount_path})")
    for name, path in shared.env:
        lines.append(f"{task}.set_env_variable({value_literal(name)}, {value_literal(path)})")
    if shared.timeout:
        lines.append(f"{k8s}.set_timeout({task}, {value_literal(shared.timeout)})")
    if shared.security_context:
        fields = ", ".join(f"{k}={value_literal(v)}" for k, v in shared.security_context)
        lines.append(f"{k8s}.set_security_context({task}, {fields})")
    return lines


def _identifier(name: str) -> str:
    """A PVC name (`workspace-data`) as the stem of a Python variable (`workspace_data`)."""
    stem = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "volume"
    return f"volume_{stem}" if stem[0].isdigit() else stem
