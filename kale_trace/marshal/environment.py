"""Tell a broken Python environment from a broken notebook (issue "real notebooks", 6).

A marshaller's library can be installed and still fail to import, e.g. pyarrow 26 (built for
numpy 2) under numpy 1.26. Its traceback then surfaces while a value is saved or loaded, and
would read as "this value cannot cross a step". `import_problem` runs where the value is
saved or loaded (the dry-run kernel, the fresh process) and says which library failed and
with which numpy; `environment_error` turns that into a message about the environment.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from importlib import metadata
from typing import Any

from kale_trace.errors import KaleTraceError

# What a compiled extension raises when the numpy it meets is not the one it was built for.
_NUMPY_MISMATCH = ("numpy", "_array_api", "multiarray")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _distribution(module: str) -> str:
    """The installed distribution that provides a top-level module (its own name if none)."""
    found = metadata.packages_distributions().get(module, [])
    return found[0] if found else module


def _origin(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


def _library_traceback(exc: BaseException) -> str:
    """The traceback from the library's own frames (importlib's and ours dropped)."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename != __file__
        and "importlib" not in frame.filename
        and not frame.filename.startswith("<frozen")
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    return "".join(lines + traceback.format_exception_only(type(exc), exc))


def import_problem(
    modules: tuple[str, ...], cache: dict[str, dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Why one of these libraries cannot be imported in this process, or None if all import.

    Runs in the kernel and in the fresh process, before a marshaller's code imports them.
    """
    for module in modules:
        if module not in cache:
            cache[module] = None
            try:
                importlib.import_module(module)
            except Exception as exc:  # ImportError, AttributeError: whatever a bad build raises
                distribution = _distribution(module)
                cache[module] = {
                    "module": module,
                    "distribution": distribution,
                    "version": _version(distribution),
                    "numpy": _version("numpy") if module != "numpy" else None,
                    "error": f"{type(exc).__name__}: {str(exc).strip()}",
                    "python": sys.executable,
                    "origin": _origin(module),
                    "traceback": _library_traceback(exc),
                }
        if cache[module] is not None:
            return cache[module]
    return None


def _older_series(version: str) -> str:
    """'26.0.1' -> '26', '1.13.1' -> '1.13': releases before this one's series."""
    parts = (version.split(".") + ["0"])[:2]
    return parts[0] if parts[1] == "0" else ".".join(parts)


def environment_error(
    problem: dict[str, Any], needed_for: str, notebook: str | None
) -> KaleTraceError:
    """The error for a library that is missing or does not import: the environment's fault."""
    name, version, numpy = problem["distribution"], problem["version"], problem["numpy"]
    error = problem["error"].splitlines()[0] if problem["error"] else "it fails to import"
    details = f"Python: {problem['python']}\n{problem['module']}: {problem['origin']}\n\n"
    details += problem["traceback"]
    if version is None:
        return KaleTraceError(
            f"{name} is not installed in this Python environment ({error}); {needed_for}",
            notebook=notebook,
            fix=f"install it where kale-trace and the notebook's kernel run: pip install {name}",
            details=details,
        )
    if numpy and any(word in problem["error"].lower() for word in _NUMPY_MISMATCH):
        if int(numpy.split(".")[0]) < 2:
            how = f"pip install '{name}<{_older_series(version)}'"
        else:
            how = f"pip install --upgrade '{name}'"
        return KaleTraceError(
            f"your environment's {name} {version} cannot be imported with numpy {numpy}: "
            f"{error}; {needed_for}",
            notebook=notebook,
            fix=f"install a {name} that matches numpy {numpy} ({how}), or a numpy that "
            f"{name} {version} was built for; the notebook itself needs no change",
            details=details,
        )
    return KaleTraceError(
        f"your environment's {name} {version} cannot be imported: {error}; {needed_for}",
        notebook=notebook,
        fix=f"reinstall it (pip install --force-reinstall '{name}=={version}') or install a "
        "version that imports in this environment; the notebook itself needs no change",
        details=details,
    )
