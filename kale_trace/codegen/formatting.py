"""Format generated Python with ruff, so the pipeline module reads like hand-written code.

ruff is pinned in the project's dependencies, so the same input gives byte-identical output.
"""

from __future__ import annotations

import subprocess

from ruff.__main__ import find_ruff_bin

from kale_trace.errors import KaleTraceError


def format_python(source: str) -> str:
    """`ruff format` with fixed settings (no user configuration is read)."""
    result = subprocess.run(
        [find_ruff_bin(), "format", "--isolated", "--line-length", "100", "-"],
        input=source,
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if result.returncode != 0:
        raise KaleTraceError(
            f"the generated pipeline could not be formatted: {result.stderr.strip()}",
            fix="this is a bug in kale-trace; please report it with the notebook",
        )
    return result.stdout
