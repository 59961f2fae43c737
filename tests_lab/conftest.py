"""A real jupyter_server with the kale-trace server extension (pytest-jupyter's fixtures)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"kale_trace.lab": True}}}


def write_notebook(folder: Path, name: str, cells: list[tuple[list[str], str]]) -> Path:
    """A notebook of code cells, each given as (tags, source)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for tags, src in cells]
    path = folder / name
    nbformat.write(nb, path)
    return path


async def start(fetch: Any, path: str, action: str = "compile", **options: Any) -> dict[str, Any]:
    response = await fetch(
        "kale-trace", "jobs", method="POST",
        body=json.dumps({"path": path, "action": action, "options": options}),
    )  # fmt: skip
    assert response.code == 202
    return json.loads(response.body)


async def poll(fetch: Any, job_id: str, until: Any, timeout: float = 240) -> dict[str, Any]:
    """Poll the job (as the panel does) until `until(view, events)`; all events gathered."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    since = 0
    while True:
        response = await fetch("kale-trace", "jobs", job_id, params={"since": str(since)})
        view = json.loads(response.body)
        events.extend(view["events"])
        since = view["next"]
        if until(view, events):
            view["all_events"] = events
            return view
        assert time.monotonic() < deadline, f"job {job_id} still {view['state']}: {events}"
        await asyncio.sleep(0.2)


def finished(view: dict[str, Any], events: list[dict[str, Any]]) -> bool:
    return view["state"] != "running"
