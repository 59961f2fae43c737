"""Run a compiled notebook with KFP's own local runner, showing progress per step.

kfp.local reports failures as a generic, coloured RuntimeError; we read each task's log
instead, so a failure names the step and shows the exception its own code raised.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kale_trace.codegen.render import pipeline_arguments, render_pipeline
from kale_trace.errors import KaleTraceError
from kale_trace.executor.kernel import strip_ansi
from kale_trace.tracer.dataflow import Dataflow

_NOTEBOOK_FRAME = re.compile(r'^\s*File "<[^>]* (cell \d+|import |definition of )')
_EXECUTING = re.compile(r" - INFO - Executing task '(?P<task>[^']+)'")
_FINISHED = re.compile(
    r" - (?:INFO|ERROR) - Task '(?P<task>[^']+)' finished with status (?P<status>\w+)"
)


@dataclass
class TaskResult:
    task: str
    status: str = "RUNNING"
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)


@dataclass
class LocalRun:
    run_dir: Path  # the pipeline_root of this run: every task's outputs are under it
    tasks: list[TaskResult]
    succeeded: bool

    def outputs(self) -> list[Path]:
        """Every output file the tasks wrote (artifacts and parameter files)."""
        return sorted(
            p for p in self.run_dir.rglob("*") if p.is_file() and p.name != "executor_output.json"
        )


def run_locally(
    flow: Dataflow,
    runs_dir: Path,
    arguments: dict[str, Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> LocalRun:
    """Run the pipeline in this Python environment, in the notebook's folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    run_dir = (runs_dir / stamp).resolve()
    run_dir.mkdir(parents=True)
    module = run_dir / "local_pipeline.py"
    module.write_text(render_pipeline(flow, local=True), encoding="utf-8")
    args_file = run_dir / "arguments.json"
    args_file.write_text(json.dumps(pipeline_arguments(flow, arguments or {})), encoding="utf-8")
    root = run_dir / "outputs"
    names = {s.name.replace("_", "-"): s.display_name for s in flow.steps}
    tasks: list[TaskResult] = []
    full_log: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kale-trace-workspace-") as workspace:
        command = [
            sys.executable, "-m", "kale_trace.runners.local_child",
            str(module), str(root), workspace, str(args_file),
        ]  # fmt: skip
        started = time.perf_counter()
        with subprocess.Popen(
            command,
            cwd=flow.notebook.path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        ) as child:
            try:
                assert child.stdout is not None
                for raw in child.stdout:
                    line = strip_ansi(raw.rstrip("\n"))
                    full_log.append(line)
                    if match := _EXECUTING.search(line):
                        tasks.append(TaskResult(match["task"]))
                        started = time.perf_counter()
                        label = names.get(match["task"], match["task"])
                        progress(f"[{len(tasks)}/{len(flow.steps)}] {label} ...")
                    elif (match := _FINISHED.search(line)) and tasks:
                        tasks[-1].status = match["status"]
                        tasks[-1].seconds = time.perf_counter() - started
                        label = names.get(match["task"], match["task"])
                        progress(
                            f"[{len(tasks)}/{len(flow.steps)}] {label}: "
                            f"{match['status'].lower()} ({tasks[-1].seconds:.1f} s)"
                        )
                    elif tasks:
                        tasks[-1].log.append(line)
                code = child.wait()
            except KeyboardInterrupt:
                child.terminate()
                child.wait()
                raise
    (run_dir / "run.log").write_text("\n".join(full_log) + "\n", encoding="utf-8")
    run = LocalRun(root, tasks, code == 0 and all(t.status == "SUCCESS" for t in tasks))
    if not run.succeeded:
        failed = next((t for t in tasks if t.status != "SUCCESS"), None)
        step = names.get(failed.task, failed.task) if failed else None
        raise KaleTraceError(
            "the pipeline failed in this step" if failed else "the local run failed to start",
            notebook=str(flow.notebook.path),
            step=step,
            details=user_traceback(failed.log if failed else []) or "(no traceback in the log)",
            fix=f"fix the cell named in the traceback; the full log of every task is in {run_dir}",
        )
    return run


def user_traceback(log: list[str]) -> str:
    """The last traceback in a task log, from the first notebook frame on."""
    lines = [line[4:] if line.startswith("    ") else line for line in log]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if not starts:
        return "\n".join(line for line in lines if line.strip())[-4000:]
    block = []
    for line in lines[starts[-1] :]:
        if line.startswith("-----") or line.endswith("> failed"):
            break  # kfp's separator, or our own exit message after the traceback
        if line.strip():
            block.append(line)
    notebook_frames = [i for i, line in enumerate(block) if _NOTEBOOK_FRAME.search(line)]
    if notebook_frames:
        block = [block[0], *block[notebook_frames[0] :]]
    return "\n".join(block)
