"""The server extension against a real jupyter_server: jobs, progress, cancel, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from tornado.httpclient import HTTPClientError

from tests_lab.conftest import finished, poll, start, write_notebook

TWO_STEPS = [
    (["imports"], "import math"),
    (["step:make"], "values = [math.sqrt(i) for i in range(10)]"),
    (["step:total", "prev:make"], "total = sum(values)\nprint(total)"),
]


def _kernels_of(pid: int) -> list[psutil.Process]:
    """The ipykernel processes a job's worker started (jupyter_client gives them a session)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "ipykernel" in " ".join(p.cmdline())]


async def test_compile_job_reports_each_stage_and_writes_the_outputs(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    write_notebook(jp_root_dir, "two.ipynb", TWO_STEPS)
    job = await start(jp_fetch, "two.ipynb", outdir="out")
    view = await poll(jp_fetch, job["id"], finished)
    assert view["state"] == "succeeded", view
    events = view["all_events"]
    stages = [e.get("stage") for e in events if e["kind"] == "progress"]
    dry = [e["step"] for e in events if e.get("stage") == "dry-run"]
    assert dry == ["(imports and functions)", "make", "total"]
    assert stages[0] == "load" and stages[-1] == "compile"
    result = view["result"]
    assert Path(result["yaml"]).is_file() and Path(result["python"]).is_file()
    assert Path(result["outdir"]) == jp_root_dir / "out"
    flow = json.loads(Path(result["dataflow"]).read_text())
    total = next(s for s in flow["steps"] if s["name"] == "total")
    assert [(i["name"], i["from"]) for i in total["inputs"]] == [("values", "make")]
    report = await jp_fetch("kale-trace", "jobs", job["id"], "files", "report_html")
    assert report.headers["Content-Type"].startswith("text/html")
    assert b"total" in report.body and report.body.lstrip().lower().startswith(b"<!doctype html")
    with pytest.raises(HTTPClientError) as missing:
        await jp_fetch("kale-trace", "jobs", job["id"], "files", "notebook")
    assert missing.value.code == 404


async def test_cancel_ends_the_dry_run_kernel_and_the_worker(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    cells = [(["imports"], "import time"), (["step:slow"], "time.sleep(120)")]
    write_notebook(jp_root_dir, "slow.ipynb", cells)
    job = await start(jp_fetch, "slow.ipynb")

    def in_dry_run(view: dict[str, Any], events: list[dict[str, Any]]) -> bool:
        return any(e.get("stage") == "dry-run" for e in events) or view["state"] != "running"

    await poll(jp_fetch, job["id"], in_dry_run)
    deadline = time.monotonic() + 30
    kernels = _kernels_of(job["pid"])
    while not kernels and time.monotonic() < deadline:
        time.sleep(0.2)
        kernels = _kernels_of(job["pid"])
    assert kernels, "the dry run's kernel was not found"
    response = await jp_fetch("kale-trace", "jobs", job["id"], method="DELETE")
    assert response.code == 202
    view = await poll(jp_fetch, job["id"], finished, timeout=30)
    assert view["state"] == "cancelled"
    gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not psutil.pid_exists(job["pid"]) or (
        psutil.Process(job["pid"]).status() == psutil.STATUS_ZOMBIE
    )
    assert not (jp_root_dir / ".kale").exists()  # an interrupted compile leaves nothing


async def test_bad_tag_is_a_located_error(jp_fetch: Any, jp_root_dir: Path) -> None:
    cells = [(["imports"], "import os"), (["step:a"], "x = 1"), (["stpe:b"], "y = x + 1")]
    write_notebook(jp_root_dir, "bad.ipynb", cells)
    job = await start(jp_fetch, "bad.ipynb")
    view = await poll(jp_fetch, job["id"], finished)
    assert view["state"] == "failed"
    error = view["error"]
    assert error["notebook"] == "bad.ipynb"
    assert error["cell"] == 2
    assert "stpe:b" in error["message"]
    assert error["fix"] and "step:<name>" in error["fix"]


async def test_failing_cell_names_its_step(jp_fetch: Any, jp_root_dir: Path) -> None:
    cells = [(["step:ok"], "a = 1"), (["step:boom", "prev:ok"], "raise ValueError('no')")]
    write_notebook(jp_root_dir, "boom.ipynb", cells)
    view = await poll(jp_fetch, (await start(jp_fetch, "boom.ipynb"))["id"], finished)
    assert view["state"] == "failed"
    assert view["error"]["step"] == "boom" and view["error"]["cell"] == 1


async def test_two_concurrent_jobs_do_not_interfere(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "first.ipynb", TWO_STEPS)
    other = [(["step:alpha"], "word = 'alpha'"), (["step:beta", "prev:alpha"], "n = len(word)")]
    write_notebook(jp_root_dir, "second.ipynb", other)
    one = await start(jp_fetch, "first.ipynb", outdir="out-first")
    two = await start(jp_fetch, "second.ipynb", outdir="out-second")
    assert one["id"] != two["id"]
    views = [await poll(jp_fetch, j["id"], finished) for j in (one, two)]
    assert [v["state"] for v in views] == ["succeeded", "succeeded"]
    steps = [
        [s["name"] for s in json.loads(Path(v["result"]["dataflow"]).read_text())["steps"]]
        for v in views
    ]
    assert steps == [["make", "total"], ["alpha", "beta"]]
    dry = [[e["step"] for e in v["all_events"] if e.get("stage") == "dry-run"] for v in views]
    assert [d[-2:] for d in dry] == [["make", "total"], ["alpha", "beta"]]


async def test_same_output_folder_twice_is_refused_while_running(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    cells = [(["imports"], "import time"), (["step:slow"], "time.sleep(30)")]
    write_notebook(jp_root_dir, "busy.ipynb", cells)
    job = await start(jp_fetch, "busy.ipynb")
    with pytest.raises(HTTPClientError) as refused:
        await start(jp_fetch, "busy.ipynb")
    assert refused.value.code == 409
    await jp_fetch("kale-trace", "jobs", job["id"], method="DELETE")
    assert (await poll(jp_fetch, job["id"], finished, timeout=30))["state"] == "cancelled"


async def test_paths_outside_the_root_are_refused(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "two.ipynb", TWO_STEPS)
    for path, options in (("../x.ipynb", {}), ("two.ipynb", {"outdir": "../../tmp/out"})):
        with pytest.raises(HTTPClientError) as refused:
            await start(jp_fetch, path, **options)
        assert refused.value.code == 400


async def test_cluster_run_without_a_host_is_a_located_error(
    jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    write_notebook(jp_root_dir, "two.ipynb", TWO_STEPS)
    view = await poll(jp_fetch, (await start(jp_fetch, "two.ipynb", "run-kfp"))["id"], finished)
    assert view["state"] == "failed"
    assert view["error"]["notebook"] == "two.ipynb"
    assert "KF_PIPELINES_ENDPOINT" in view["error"]["fix"]
    config = json.loads((await jp_fetch("kale-trace", "config")).body)
    assert config["kfp_host"] == "" and "has_token" in config


async def test_second_compile_reports_what_changed(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "two.ipynb", TWO_STEPS)
    first = await poll(jp_fetch, (await start(jp_fetch, "two.ipynb"))["id"], finished)
    assert first["state"] == "succeeded" and first["result"]["changes"] is None
    changed = [
        *TWO_STEPS[:2],
        (["step:total", "prev:make"], "total = sum(values)\nn = len(values)"),
    ]
    changed.append((["step:report", "prev:total"], "print(n, total)"))
    write_notebook(jp_root_dir, "two.ipynb", changed)
    second = await poll(jp_fetch, (await start(jp_fetch, "two.ipynb"))["id"], finished)
    assert second["state"] == "succeeded"
    changes = second["result"]["changes"]
    assert "total" in changes and "report" in changes and "n" in changes
