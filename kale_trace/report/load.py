"""Read a dataflow from `dataflow.json`, with errors that name the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kale_trace.errors import KaleTraceError
from kale_trace.report.model import Report, from_dict


def is_notebook(path: Path) -> bool:
    """A notebook by its suffix, else by its content (nbformat's top-level keys)."""
    if path.suffix == ".ipynb":
        return True
    if path.suffix == ".json":
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "nbformat" in data and "cells" in data


def read_dataflow(path: Path) -> dict[str, Any]:
    """The raw dict of a dataflow.json file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise KaleTraceError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise KaleTraceError(
            f"{path} is not a UTF-8 text file",
            fix="pass the dataflow.json written by `kale-trace compile`",
        ) from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise KaleTraceError(
            f"{path} is not valid JSON ({error})",
            fix="pass the dataflow.json written by `kale-trace compile`, or recompile the "
            "notebook to write it again",
        ) from None
    if isinstance(data, dict) and "nbformat" in data and "cells" in data:
        raise KaleTraceError(
            f"{path} is a notebook, not a dataflow",
            fix="compile it first (`kale-trace compile NOTEBOOK`) and pass OUTDIR/dataflow.json",
        )
    return data


def load_report(path: Path) -> Report:
    """The report model of a dataflow.json file."""
    return from_dict(read_dataflow(path), where=str(path))
