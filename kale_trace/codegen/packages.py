"""Which distributions each step needs, pinned to the versions the dry run used.

A cluster image may lack the notebook's libraries; pinning to the dry run's versions makes
the pipeline compute with the code the notebook was traced with.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from kale_trace.errors import KaleTraceError

# Never installed per step: the interpreter's own modules and what KFP brings itself.
_PROVIDED = {"kfp", "kale_trace", "__main__", "builtins", "IPython", "ipykernel"}


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def pinned_requirements(
    modules: set[str], extra_distributions: set[str] = frozenset()
) -> list[str]:
    """`name==version` for the distributions providing these top-level modules, sorted."""
    wanted: set[str] = set(extra_distributions)
    for module in modules:
        top = module.split(".")[0]
        if not top or top in sys.stdlib_module_names or top in _PROVIDED:
            continue
        wanted.update(_distributions().get(top, []))
    pins = []
    for dist in sorted(wanted, key=str.lower):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def read_requirements(path: Path) -> tuple[str, ...]:
    """`--requirements FILE`: the lines every step installs instead of the detected pins.

    Each non-blank line (comments stripped) must be one requirement, as pip reads it; pip
    options such as `-r` or `--index-url` have no place in `packages_to_install`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KaleTraceError(
            f"cannot read requirements file {path}: {exc}",
            fix="pass a readable text file with one requirement per line",
        ) from exc
    requirements: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"\s#", raw, maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise KaleTraceError(
                f"requirements file {path}, line {number}: {line!r} is not a valid "
                f"requirement ({str(exc).splitlines()[0]})",
                fix="write one requirement per line, e.g. scikit-learn==1.5.2 or "
                "pandas>=2; pip options (-r, -e, --index-url) are not supported",
            ) from exc
        if line not in requirements:
            requirements.append(line)
    return tuple(requirements)
