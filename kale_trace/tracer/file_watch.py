"""Runs inside the dry-run kernel: which files under the working directory steps write and read.

In a pipeline every step is a separate pod, so a file one step writes and a later step reads
is data crossing a step. Writes are found by diffing a stat snapshot (path, size, mtime) of
the working directory after each step, which also sees native writers (pyarrow's parquet I/O
bypasses Python's `open`). Reads come from `open` audit events; the dataflow adds paths
spelled out in the step's code, for native readers.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MAX_FILES = 20_000  # a snapshot stops here: a notebook folder, not a data lake
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", ".kale"}

_opened: set[str] = set()
_root: str | None = None


def snapshot(root: str) -> dict[str, list[int]]:
    """relative path -> [size, mtime_ns] of the regular files under root, bounded."""
    found: dict[str, list[int]] = {}
    root = root.rstrip(os.sep) or os.sep
    prefix = len(root) + (0 if root.endswith(os.sep) else 1)  # entry paths start with root/
    pending = [root]
    while pending and len(found) < MAX_FILES:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        if folder != root and any(e.name == "pyvenv.cfg" for e in entries):
            continue  # a virtual environment
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    found[entry.path[prefix:]] = [stat.st_size, stat.st_mtime_ns]
            except OSError:
                continue
            if len(found) >= MAX_FILES:
                break
    return found


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or _root is None:
        return
    path, mode = args[0], args[1]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # a file descriptor
    if mode is not None and any(flag in str(mode) for flag in "wax") and "+" not in str(mode):
        return  # a write only: the snapshot sees it
    try:
        full = os.path.abspath(os.fsdecode(path))
    except Exception:
        return
    if full.startswith(_root + os.sep):
        _opened.add(os.path.relpath(full, _root))


def watch(root: str) -> None:
    """Start recording files under root opened for reading. Audit hooks cannot be removed,
    so the hook is added once and does nothing outside a dry run."""
    global _root
    if _root is None:
        sys.addaudithook(_audit)
    _root = os.path.abspath(root)
    _opened.clear()


def watched_root() -> str:
    """The folder being watched (the notebook's), whatever the cwd is now."""
    return _root or os.getcwd()


def take_opened() -> list[str]:
    """Files under the root opened for reading since the last call."""
    found = sorted(_opened)
    _opened.clear()
    return found
