"""Output folders that kale-trace may replace, and nothing else.

kale-trace writes a folder as a whole: it is staged beside the old files and moved into place
only when complete, so a failed or interrupted compile leaves the previous output as it was.
Replacing means deleting, so a folder is replaced only if it is new, empty, or carries the
marker file kale-trace writes into each of its output folders, and then only if it holds
nothing but what that marker lists (and `runs/`, which is kept). Everything else, including
the notebook's own folder, a home folder or `/`, is refused before any work is done.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kale_trace import __version__
from kale_trace.errors import KaleTraceError
from kale_trace.interrupts import deferred_signals

MARKER = ".kale-trace-output"  # JSON: which files kale-trace wrote into the folder
KEEP = ("runs",)  # local run results survive a recompile
_STAGING = ".kale-trace-staging-"  # + pid: a dead pid's staging is a leftover
_OLD = ".kale-trace-old-"


def check_target(target: Path) -> Path:
    """The absolute output folder, if kale-trace may write it; else a KaleTraceError why not."""
    if target.is_symlink() and not target.exists():
        raise KaleTraceError(
            f"the output folder {target} is a symbolic link to {os.readlink(target)}, "
            "which does not exist",
            fix=f"create the folder it points to, or pass another -o than {target}",
        )
    path = target.resolve()
    if path.exists() and not path.is_dir():
        raise KaleTraceError(
            f"the output folder {target} is a file, not a folder",
            fix="pass -o a new or empty folder (kale-trace writes several files into it)",
        )
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise KaleTraceError(
            f"cannot create the output folder {target}: {blocker} is a file",
            fix=f"pass -o a folder whose parents are folders, or move {blocker} away",
        )
    if path.is_dir():
        _check_replaceable(target, path)
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing non-folder among `path`'s parents, if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_replaceable(target: Path, path: Path) -> None:
    """An existing folder: refuse it unless everything in it is kale-trace's own."""
    try:
        entries = {e for e in os.listdir(path) if not e.startswith((_STAGING, _OLD))}
    except OSError as error:
        raise write_error(error, path) from None
    if not entries:
        return
    listed = _marker_files(path) if MARKER in entries else None
    if listed is None:
        raise KaleTraceError(
            f"the output folder {target} already holds files that kale-trace did not write "
            f"({_names(entries)}); writing the pipeline there would delete "
            + ("it" if len(entries) == 1 else "them"),
            fix="pass -o a new or empty folder (the default is .kale); if "
            f"{target} is an older kale-trace output, delete it yourself first",
        )
    foreign = entries - listed - set(KEEP) - {MARKER}
    if foreign:
        raise KaleTraceError(
            f"the output folder {target} was written by kale-trace but now also holds "
            f"{_names(foreign)}; replacing the folder would delete "
            + ("it" if len(foreign) == 1 else "them"),
            fix=f"move {_names(foreign)} out of {target}, or pass another -o",
        )


def _marker_files(path: Path) -> set[str] | None:
    """The names the marker lists, or None if it is not kale-trace's marker."""
    marker = path / MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if data.get("written_by") != "kale-trace" or not isinstance(files, list):
        return None
    return {f for f in files if isinstance(f, str) and "/" not in f}


def _names(names: set[str]) -> str:
    shown = ", ".join(repr(n) for n in sorted(names)[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _busy_staging(name: str) -> bool:
    """A live kale-trace's staging folder (perhaps another compile's): leave it alone.

    Staging and old folders of a kale-trace that was killed are leftovers, removed with the
    old files on the next compile; neither is ever counted as the user's.
    """
    if not name.startswith(_STAGING):
        return False
    pid = name[len(_STAGING) :].split("-", 1)[0]
    return pid.isdigit() and _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a staging folder whose files replace `target`'s only if the block succeeds."""
    path = check_target(target)
    created = _make_folders(path)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=path))
    except OSError as error:
        _remove_created(created)
        raise write_error(error, path) from None
    try:
        yield staging
        _write_marker(staging)
    except BaseException as error:
        with deferred_signals():
            shutil.rmtree(staging, ignore_errors=True)
            _remove_created(created)
        if isinstance(error, OSError) and _about_output(error, staging):
            raise write_error(error, _shown(error.filename, staging, path)) from None
        raise
    with deferred_signals():
        try:
            _check_replaceable(target, path)
            _move_into_place(staging, path)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_created(created)
            if isinstance(error, OSError):
                raise write_error(error, path) from None
            raise


def _make_folders(path: Path) -> list[Path]:
    """Create `path` and its missing parents; return those created, outermost first."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # created meanwhile by someone else: not ours to remove
        except OSError as error:
            _remove_created(created)
            raise write_error(error, folder) from None
        created.append(folder)
    return created


def _remove_created(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if still empty: never anything else's


def _write_marker(staging: Path) -> None:
    files = sorted(os.listdir(staging))
    marker = {"written_by": "kale-trace", "version": __version__, "files": files}
    (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, path: Path) -> None:
    """Swap the old files for the staged ones inside `path`; undo every move on failure."""
    old = Path(tempfile.mkdtemp(prefix=_OLD, dir=path))
    keep = {staging.name, old.name, *KEEP}
    outgoing = [e for e in os.listdir(path) if e not in keep and not _busy_staging(e)]
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in outgoing:
            os.replace(path / name, old / name)
            moved_out.append(name)
        for name in sorted(os.listdir(staging)):
            os.replace(staging / name, path / name)
            moved_in.append(name)
    except OSError:
        for name in reversed(moved_in):
            os.replace(path / name, staging / name)
        for name in reversed(moved_out):
            os.replace(old / name, path / name)
        shutil.rmtree(old, ignore_errors=True)
        raise
    staging.rmdir()
    shutil.rmtree(old, ignore_errors=True)


def _about_output(error: OSError, staging: Path) -> bool:
    """An OSError from writing the staged output (not, say, from reading an input)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    name = error.filename
    return isinstance(name, (str, os.PathLike)) and Path(name).is_relative_to(staging)


def _shown(filename: object, staging: Path, path: Path) -> Path:
    """A staged file's name as the user will know it: inside the output folder."""
    if isinstance(filename, (str, os.PathLike)) and Path(filename).is_relative_to(staging):
        return path / Path(filename).relative_to(staging)
    return path


def write_error(
    error: OSError, path: Path | str | None = None, fix: str | None = None
) -> KaleTraceError:
    """An OSError while writing output, as a message naming the path, the reason and the fix."""
    where = Path(path if path is not None else (error.filename or "the output folder"))
    reason = error.strerror or str(error)
    absolute = Path(os.path.abspath(where))
    folder = next((p for p in (absolute, *absolute.parents) if p.is_dir()), absolute.parent)
    return KaleTraceError(f"cannot write {where}: {reason}", fix=fix or _fix(error, where, folder))


def _fix(error: OSError, where: Path, folder: Path) -> str:
    """What to free or change, by the OS's reason."""
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"free space on the disk that holds {folder} (see `df -h {folder}`), or pass -o "
            "a folder on another disk"
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"make {folder} writable for this user, or pass -o a folder you can write"
    if code == errno.EROFS:
        return f"{folder} is on a read-only file system: pass -o a writable folder"
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"a file or folder is in the way at {where}: move it, or pass another -o"
    if code in (errno.EMFILE, errno.ENFILE):
        return "close other programs or raise the limit of open files (`ulimit -n`)"
    return f"check that {folder} can be written"
