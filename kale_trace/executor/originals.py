"""The user's files come out of the dry run as they went in.

The dry run runs in the notebook's folder, so relative paths work as in the notebook; a step
that appends to a data file would then change what the pipeline reads next. The kernel-side
watch (`tracer/file_watch.py`) copies each existing file to a backup folder before the first
write, removal or rename; here, after the dry run (whatever way it ended), every original is
put back, and a file changed by a native writer that the watch could not see is named.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kale_trace.tracer.file_watch import snapshot


@dataclass
class Originals:
    """Back up, then restore, the files under `root` around a dry run."""

    root: Path
    backup: Path
    restored: list[str] = field(default_factory=list)  # relative paths put back
    unrestored: list[str] = field(default_factory=list)  # changed, but not seen in time
    _before: dict[str, list[int]] = field(default_factory=dict)

    def __enter__(self) -> Originals:
        self.backup.mkdir(parents=True, exist_ok=True)
        self._before = snapshot(str(self.root))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()

    def restore(self) -> None:
        manifest = self.backup / "manifest.jsonl"
        lines = manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []
        for line in lines:
            entry = json.loads(line)
            original = Path(entry["original"])
            original.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry["copy"], original)
            self.restored.append(os.path.relpath(original, self.root))
        after = snapshot(str(self.root))
        self.unrestored = sorted(
            path for path, stat in self._before.items() if after.get(path) != stat
        )
        self.restored = sorted(set(self.restored) - set(self.unrestored))
