"""Runs inside the dry-run kernel: which files under the working directory steps write and read.

In a pipeline every step is a separate pod, so a file one step writes and a later step reads
is data crossing a step. Writes are found by diffing a stat snapshot (path, size, mtime) of
the working directory after each step, which also sees native writers (pyarrow's parquet I/O
bypasses Python's `open`). Reads come from `open` audit events; the dataflow adds paths
spelled out in the step's code, for native readers.

The user's files must come out of the dry run as they went in (a step that appends to a data
file would otherwise change what the pipeline then reads): before the first write, removal
or rename of an existing file under the folder, the file is copied to a backup folder the
host gave, and listed in its manifest; the host puts every such file back after the dry run.
Native writers bypass these events: the host compares stat snapshots and warns for those.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

MAX_FILES = 20_000  # a snapshot stops here: a notebook folder, not a data lake
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", ".kale"}

_opened: set[str] = set()
_root: str | None = None
_backup: str | None = None  # folder the originals are copied to; None: no backups
_backed_up: set[str] = set()
MAX_BACKUP_BYTES = 2 * 1024**3  # beyond this, a changed file is warned about, not kept
_backup_bytes = 0
# Audit events that change or remove an existing file, and which arguments are its paths.
_WRITE_EVENTS = {"os.remove": (0,), "os.rename": (0, 1), "os.truncate": (0,), "shutil.move": (0, 1)}


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
    if _root is None:
        return
    if event in _WRITE_EVENTS:
        for position in _WRITE_EVENTS[event]:
            _keep_original(args[position])
        return
    if event == "shutil.rmtree" and isinstance(args[0], (str, bytes, os.PathLike)):
        for folder, _, names in os.walk(os.fsdecode(args[0])):
            for name in names:
                _keep_original(os.path.join(folder, name))
        return
    if event != "open":
        return
    path, mode = args[0], args[1]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # a file descriptor
    writes = mode is not None and any(flag in str(mode) for flag in "wax+")
    if writes or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC)):
        _keep_original(path)
    if writes and "+" not in str(mode):
        return  # a write only: the snapshot sees it
    try:
        full = os.path.abspath(os.fsdecode(path))
    except Exception:
        return
    if full.startswith(_root + os.sep):
        _opened.add(os.path.relpath(full, _root))


def _keep_original(path: Any) -> None:
    """Copy an existing file under the root to the backup folder, once, before it changes."""
    global _backup_bytes
    if _backup is None or not isinstance(path, (str, bytes, os.PathLike)):
        return
    try:
        full = os.path.abspath(os.fsdecode(path))
    except Exception:
        return
    if not full.startswith(_root + os.sep) or full in _backed_up or not os.path.isfile(full):
        return
    _backed_up.add(full)
    size = os.path.getsize(full)
    if _backup_bytes + size > MAX_BACKUP_BYTES:
        return  # the host's snapshot comparison names it
    _backup_bytes += size
    copy = os.path.join(_backup, str(len(_backed_up)))
    shutil.copy2(full, copy)
    with open(os.path.join(_backup, "manifest.jsonl"), "a", encoding="utf-8") as manifest:
        manifest.write(json.dumps({"original": full, "copy": copy}) + "\n")


def watch(root: str, backup: str | None = None) -> None:
    """Start recording files under root opened for reading (and, with a backup folder,
    keeping the originals of files about to change). Audit hooks cannot be removed, so the
    hook is added once and does nothing outside a dry run."""
    global _root, _backup, _backup_bytes
    if _root is None:
        sys.addaudithook(_audit)
    _root = os.path.abspath(root)
    _backup = backup
    _backup_bytes = 0
    _backed_up.clear()
    _opened.clear()


def watched_root() -> str:
    """The folder being watched (the notebook's), whatever the cwd is now."""
    return _root or os.getcwd()


def take_opened() -> list[str]:
    """Files under the root opened for reading since the last call."""
    found = sorted(_opened)
    _opened.clear()
    return found
