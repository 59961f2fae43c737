"""One real IPython kernel, driven cell by cell through nbclient.

We drive cells ourselves (instead of `NotebookClient.execute`) so that a silent probe can run
between steps without touching `_`, `Out` or execution counts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from kale_trace.errors import KaleTraceError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Kernel tracebacks carry terminal colours; messages and logs should not."""
    return _ANSI.sub("", text)


class Kernel:
    """A started kernel whose working directory is the notebook's folder."""

    def __init__(self, notebook: Path, *, cell_timeout: float | None = None) -> None:
        self.notebook = notebook
        self._nb = nbformat.v4.new_notebook()
        self._client = NotebookClient(
            self._nb,
            timeout=cell_timeout,
            kernel_name="python3",
            allow_errors=False,
            resources={"metadata": {"path": str(notebook.parent)}},
        )
        self._context: Any = None

    def __enter__(self) -> Kernel:
        # The kernel's own stderr (transport warnings) is noise here; errors arrive as messages.
        self._context = self._client.setup_kernel(stderr=subprocess.DEVNULL)
        self._context.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._context.__exit__(kind, error, traceback)
        except Exception:  # a kernel that already died cannot be shut down cleanly
            pass

    def run_cell(self, source: str, *, index: int, tags: tuple[str, ...] = ()) -> None:
        """Run one cell as Jupyter would; errors become KaleTraceError with the cell's traceback."""
        # Only the tag nbclient acts on: other tags may not pass nbformat's schema (a comma).
        honoured = [t for t in tags if t.strip() == "raises-exception"]
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": honoured})
        self._nb.cells.append(cell)
        try:
            self._client.execute_cell(cell, len(self._nb.cells) - 1)
        except CellTimeoutError as exc:
            raise KaleTraceError(
                f"the cell did not finish within {self._client.timeout} s during the dry run",
                cell=index,
                cell_source=source,
                fix="raise --cell-timeout, or give smaller --sample-params for the dry run",
            ) from exc
        except DeadKernelError as exc:
            raise KaleTraceError(
                "the kernel died while running this cell (a crash, os._exit, or out of memory)",
                cell=index,
                cell_source=source,
                fix="run the notebook in Jupyter to reproduce; use smaller --sample-params "
                "if it ran out of memory",
            ) from exc
        except CellExecutionError as exc:
            raise KaleTraceError(
                f"the cell raised {exc.ename}: {strip_ansi(str(exc.evalue))}",
                cell=index,
                cell_source=source,
                details=_cell_traceback(cell),
                fix="fix the notebook so it runs top to bottom (kale-trace runs it once to "
                "see the dataflow), or tag the cell `raises-exception` if the error is intended",
            ) from exc

    def run_silent(self, code: str, expressions: dict[str, str] | None = None) -> dict[str, Any]:
        """Run code without a trace in the user's history; return evaluated user expressions."""
        kc = self._client.kc
        msg_id = kc.execute(
            code,
            silent=True,
            store_history=False,
            user_expressions=expressions or {},
            allow_stdin=False,
        )
        try:
            reply = self._client.wait_for_reply(msg_id)
        except (TimeoutError, DeadKernelError, RuntimeError) as exc:
            raise KaleTraceError(
                "the kernel stopped answering while kale-trace probed it",
                fix="run with --debug and report it; the notebook itself may have exhausted memory",
            ) from exc
        content = (reply or {}).get("content", {})
        if content.get("status") != "ok":
            trace = strip_ansi("\n".join(content.get("traceback", [])))
            raise KaleTraceError(
                f"the dry-run probe failed: {content.get('ename')}: {content.get('evalue')}",
                details=trace,
                fix="this is a bug in kale-trace; please report it with the notebook",
            )
        results = {}
        for key, value in content.get("user_expressions", {}).items():
            if value.get("status") != "ok":
                raise KaleTraceError(f"the dry-run probe could not evaluate {key}: {value}")
            results[key] = value["data"]["text/plain"]
        return results


def _cell_traceback(cell: Any) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return strip_ansi("\n".join(output.get("traceback", [])))
    return ""
