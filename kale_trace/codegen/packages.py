"""Which distributions each step needs, pinned to the versions the dry run used.

A cluster image may lack the notebook's libraries; pinning to the dry run's versions makes
the pipeline compute with the code the notebook was traced with.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib import metadata

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
