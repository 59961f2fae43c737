"""The one error type kale-trace raises for problems in a notebook or its run.

The CLI turns it into a message and exit code 1; anything else is a bug in kale-trace.
"""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path: str | Path) -> str:
    """A path as the user should read it: relative to where the command runs, if inside."""
    try:
        relative = os.path.relpath(Path(path).resolve(), Path.cwd())
    except (OSError, ValueError):
        return str(path)
    return relative if not relative.startswith("..") else str(Path(path).resolve())


class KaleTraceError(Exception):
    """A problem the user can fix, located as precisely as we can.

    `notebook` is the notebook path, `cell` the 0-based index of the cell among all cells,
    `cell_source` the cell's first line, `step` the step name, `fix` what to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: str | None = None,
        cell: int | None = None,
        cell_source: str | None = None,
        step: str | None = None,
        fix: str | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.notebook = notebook
        self.cell = cell
        self.cell_source = cell_source
        self.step = step
        self.fix = fix
        self.details = details

    def located(self, **where: object) -> KaleTraceError:
        """Fill in location fields that are still unknown (used as errors bubble up)."""
        for key, value in where.items():
            if getattr(self, key, None) is None:
                setattr(self, key, value)
        return self

    def render(self) -> str:
        """The full human message: where, what, the fix, and any captured details."""
        where = []
        if self.notebook:
            where.append(display_path(self.notebook))
        if self.cell is not None:
            first = (self.cell_source or "").strip().splitlines()
            snippet = f" ({first[0][:60]!r})" if first else ""
            where.append(f"cell {self.cell}{snippet}")
        if self.step:
            where.append(f"step '{self.step}'")
        head = f"{', '.join(where)}: " if where else ""
        lines = [f"error: {head}{self.message}"]
        if self.details:
            lines.append("")
            lines.append(self.details.rstrip())
            lines.append("")
        if self.fix:
            lines.append(f"fix: {self.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()
