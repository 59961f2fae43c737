"""Kale's per-step settings and volumes, validated where the notebook is read.

Kubernetes and the KFP SDK reject a bad memory quantity or label only when the pipeline is
compiled or, worse, when a pod is created on the cluster. Checking here lets the error name
the cell that carries the tag and say how to fix it. Code generation re-reads the same
values through these functions, so what is validated is exactly what is emitted.
"""

from __future__ import annotations

import re
from typing import Any

from kale_trace.errors import KaleTraceError
from kale_trace.notebook.model import Note, SecretRef, Volume

# The patterns KFP 2.x itself enforces in set_cpu_limit / set_memory_limit /
# set_accelerator_limit: a value they accept compiles, a value they refuse is ours to report.
_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?")
_MEMORY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")
_COUNT = re.compile(r"[0-9]+")
# Kubernetes qualified names (labels, annotation keys) and label values.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(rf"{_NAME}")
_LABEL_VALUE = re.compile(rf"({_NAME})?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An OCI image reference: registry/path:tag@digest, nothing that could break out of a string.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")

GPU_ALIASES = {"gpu": "nvidia.com/gpu"}  # Kale's UI writes nvidia.com/gpu; `gpu` is shorthand
VOLUME_ACCESS_MODES = {
    "rwo": "ReadWriteOnce",
    "rwm": "ReadWriteMany",
    "rom": "ReadOnlyMany",
    "": "ReadWriteOnce",
}


def check_limit(resource: str, value: str) -> tuple[str, str]:
    """`limit:<resource>:<value>` → (resource, value), the resource spelled as KFP wants it.

    cpu and memory become container limits; anything else domain-qualified (nvidia.com/gpu,
    amd.com/gpu, google.com/tpu, ...) is an accelerator type with an integer count.
    """
    resource = GPU_ALIASES.get(resource, resource)
    if resource == "cpu":
        if not _CPU.fullmatch(value):
            raise KaleTraceError(
                f"limit:cpu:{value} is not a CPU quantity",
                fix="write a number of cores or millicores, e.g. limit:cpu:2 or limit:cpu:500m",
            )
    elif resource == "memory":
        if not _MEMORY.fullmatch(value):
            raise KaleTraceError(
                f"limit:memory:{value} is not a memory quantity KFP accepts",
                fix="write an integer with an optional unit (K, M, G, T, Ki, Mi, Gi, Ti), "
                "e.g. limit:memory:4Gi or limit:memory:1536Mi",
            )
    elif "/" in resource and _DNS_SUBDOMAIN.fullmatch(resource.split("/", 1)[0]):
        if not _QUALIFIED_NAME.fullmatch(resource.split("/", 1)[1]):
            raise KaleTraceError(
                f"limit:{resource} is not a valid resource name",
                fix="write limit:nvidia.com/gpu:<count> (or another <vendor>/<resource>)",
            )
        if not _COUNT.fullmatch(value):
            raise KaleTraceError(
                f"limit:{resource}:{value}: an accelerator count must be a whole number",
                fix=f"write e.g. limit:{resource}:1",
            )
    else:
        raise KaleTraceError(
            f"unknown resource {resource!r} in limit:{resource}:{value}",
            fix="limit cpu, memory or an accelerator such as nvidia.com/gpu, e.g. limit:memory:4Gi",
        )
    return resource, value


def check_label(key: str, value: str) -> None:
    """A Kubernetes label: qualified-name key, value of at most 63 name characters."""
    _check_key("label", key, value)
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise KaleTraceError(
            f"label value {value!r} (label {key}) is not a valid Kubernetes label value",
            fix="use at most 63 letters, digits, '-', '_' and '.', starting and ending with a "
            "letter or digit; put free text in an annotation:<key>:<value> tag instead",
        )


def check_annotation(key: str, value: str) -> None:
    """A Kubernetes annotation: qualified-name key, any string value."""
    _check_key("annotation", key, value)


def _check_key(kind: str, key: str, value: str) -> None:
    prefix, slash, name = key.rpartition("/")
    valid = bool(_QUALIFIED_NAME.fullmatch(name)) and len(name) <= 63
    if slash:
        valid = valid and bool(_DNS_SUBDOMAIN.fullmatch(prefix)) and len(prefix) <= 253
    if not valid:
        raise KaleTraceError(
            f"{kind} key {key!r} is not a valid Kubernetes {kind} key",
            fix=f"write {kind}:<key>:<value> with a key such as team or example.com/team "
            "(letters, digits, '-', '_', '.'; an optional DNS prefix before '/')",
        )


def parse_secret(raw: str) -> SecretRef:
    """A `secret:` tag's value: `<name>:<key>:<ENV_VAR>` (Kale) or `<name>:<mount path>`."""
    parts = raw.split(":")
    if len(parts) == 3 and all(parts):
        name, key, env = parts
        _check_secret_name(name, raw)
        if not _SECRET_KEY.fullmatch(key):
            raise KaleTraceError(
                f"secret:{raw}: {key!r} is not a valid Secret key",
                fix="use letters, digits, '-', '_' and '.' in the key",
            )
        if not _ENV_NAME.fullmatch(env):
            raise KaleTraceError(
                f"secret:{raw}: {env!r} is not a valid environment variable name",
                fix="use letters, digits and '_', not starting with a digit, e.g. API_TOKEN",
            )
        return SecretRef(name=name, key=key, env=env)
    if len(parts) == 2 and parts[0] and parts[1].startswith("/"):
        name, path = parts
        _check_secret_name(name, raw)
        _check_mount_path(path, f"secret:{raw}")
        return SecretRef(name=name, mount_path=path)
    raise KaleTraceError(
        f"bad tag 'secret:{raw}'",
        fix="write secret:<secret name>:<key>:<ENV_VAR> to read one key into an environment "
        "variable, or secret:<secret name>:/mount/path to mount the Secret as files",
    )


def _check_secret_name(name: str, raw: str) -> None:
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise KaleTraceError(
            f"secret:{raw}: {name!r} is not a valid Secret name",
            fix="Secret names are lower-case letters, digits, '-' and '.', e.g. db-credentials",
        )


def _check_mount_path(path: str, what: str) -> None:
    if not path.startswith("/") or any(ch in path for ch in ":\n\r\0") or "/../" in path + "/":
        raise KaleTraceError(
            f"{what}: {path!r} is not an absolute mount path",
            fix="write an absolute path such as /mnt/data",
        )


def check_image(image: Any, what: str) -> str:
    """An image reference for `image:` tags, base_image metadata and --base-image."""
    if not isinstance(image, str) or not _IMAGE.fullmatch(image) or len(image) > 512:
        raise KaleTraceError(
            f"{what} {image!r} is not a container image reference",
            fix="write registry/name:tag, e.g. python:3.11 or ghcr.io/org/image:1.0",
        )
    return image


def parse_volumes(metadata: dict[str, Any]) -> tuple[tuple[Volume, ...], list[Note]]:
    """`kubeflow_notebook.volumes` as every Kale release wrote them, mounted on every step.

    `pvc` mounts an existing claim by name; `new_pvc` has the pipeline create a claim
    (kfp-kubernetes CreatePVC) of `size` + `size_type`, with the volume's (or the
    notebook's) `volume_access_mode` and `storage_class_name`. Kale's Rok-only types (`pv`,
    `clone`, `snapshot`) need MiniKF's Rok, which KFP v2 has no equivalent of: they are
    left out with a warning that says so. Raises KaleTraceError (without the notebook).
    """
    raw = metadata.get("volumes")
    if raw in (None, []):
        return (), []
    if not isinstance(raw, list):
        raise KaleTraceError(
            "kubeflow_notebook.volumes must be a list",
            fix='write e.g. "volumes": [{"type": "pvc", "name": "data", "mount_point": "/data"}]',
        )
    volumes: list[Volume] = []
    notes: list[Note] = []
    for number, item in enumerate(raw):
        where = f"kubeflow_notebook.volumes[{number}]"
        if not isinstance(item, dict):
            raise KaleTraceError(f"{where} is not a mapping", fix="write {type, name, mount_point}")
        item = {
            "volume_access_mode": metadata.get("volume_access_mode"),
            "storage_class_name": metadata.get("storage_class_name"),
            **{k: v for k, v in item.items() if v not in (None, "")},
        }
        if item.get("type") in ROK_VOLUME_TYPES:
            message = (
                f"{where} (type {item['type']!r}) is not mounted: it is a Rok volume, which "
                "needs MiniKF's Rok; KFP v2 has no equivalent (mount an existing claim with "
                "type 'pvc' instead)"
            )
            notes.append(Note(message, warning=True))
            continue
        volumes.append(_volume(item, where))
    _check_unique(volumes)
    return tuple(volumes), notes


ROK_VOLUME_TYPES = ("pv", "clone", "snapshot")


def _check_unique(volumes: list[Volume]) -> None:
    mounts = [v.mount_path for v in volumes]
    duplicated = sorted({m for m in mounts if mounts.count(m) > 1})
    if duplicated:
        raise KaleTraceError(
            f"two volumes are mounted at {duplicated[0]}",
            fix="give each volume its own mount_point",
        )
    names = [v.env_var for v in volumes if v.env_var]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise KaleTraceError(
            f"two volumes exposed as environment variables both become {clash[0]}",
            fix="rename one of the claims, or set expose_as_env_var to false on one of them",
        )


def volume_env_var(claim: str) -> str:
    """Kale 2's name for a volume's mount path in the environment: KALE_VOLUME_<NAME>."""
    return "KALE_VOLUME_" + re.sub(r"[^A-Z0-9]", "_", claim.upper())


def _volume(item: dict[str, Any], where: str) -> Volume:
    kind = item.get("type")
    name = item.get("name")
    mount = item.get("mount_point")
    if kind not in ("pvc", "new_pvc"):
        raise KaleTraceError(
            f"{where} has type {kind!r}; kale-trace mounts volumes of type 'pvc' (an "
            "existing claim) and 'new_pvc' (a claim the pipeline creates)",
            fix="use an existing PersistentVolumeClaim with type 'pvc', or remove the volume",
        )
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise KaleTraceError(
            f"{where} has name {name!r}, not a valid PersistentVolumeClaim name",
            fix="use lower-case letters, digits, '-' and '.', e.g. workspace-data",
        )
    if not isinstance(mount, str):
        raise KaleTraceError(f"{where} has no mount_point", fix="add e.g. mount_point: /data")
    _check_mount_path(mount, where)
    exposed = item.get("expose_as_env_var", False)
    if not isinstance(exposed, bool):
        raise KaleTraceError(f"{where} has expose_as_env_var {exposed!r}", fix="use true or false")
    env_var = volume_env_var(name) if exposed else None
    if kind == "pvc":
        return Volume(kind, name, mount, env_var=env_var)
    return _new_claim(item, where, name, mount, env_var)


def _new_claim(item: dict[str, Any], where: str, name: str, mount: str, env: str | None) -> Volume:
    size = f"{item.get('size', '')}{item.get('size_type') or ''}".strip()
    if not _MEMORY.fullmatch(size):
        raise KaleTraceError(
            f"{where} (new_pvc) has size {size!r}, not a storage quantity",
            fix='give size and size_type, e.g. "size": 5, "size_type": "Gi"',
        )
    mode = item.get("volume_access_mode") or ""
    if not isinstance(mode, str) or mode not in VOLUME_ACCESS_MODES:
        raise KaleTraceError(
            f"{where} has volume_access_mode {mode!r}",
            fix=f"use one of {', '.join(repr(m) for m in VOLUME_ACCESS_MODES if m)}",
        )
    storage_class = item.get("storage_class_name") or None
    if storage_class is not None and (
        not isinstance(storage_class, str) or not _DNS_SUBDOMAIN.fullmatch(storage_class)
    ):
        raise KaleTraceError(
            f"{where} has storage_class_name {storage_class!r}",
            fix="use the name of a StorageClass of the cluster, or leave it out",
        )
    return Volume(
        "new_pvc", name, mount, size, VOLUME_ACCESS_MODES[mode], storage_class,
        annotations=_claim_annotations(item.get("annotations"), where), env_var=env,
    )  # fmt: skip


def _claim_annotations(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Kale's UI writes a new claim's annotations as [{"key": k, "value": v}, ...]."""
    if raw in (None, [], {}):
        return ()
    pairs = raw.items() if isinstance(raw, dict) else None
    if isinstance(raw, list) and all(isinstance(a, dict) for a in raw):
        pairs = [(a.get("key"), a.get("value")) for a in raw if a.get("key") or a.get("value")]
    if pairs is None or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise KaleTraceError(
            f"{where} has annotations {raw!r}",
            fix='write a list of {"key": ..., "value": ...} mappings with string values',
        )
    for key, value in pairs:
        check_annotation(key, value)
    return tuple(sorted(pairs))
