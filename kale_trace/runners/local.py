"""Run a compiled notebook with KFP's own local runner, showing progress per step.

kfp.local reports failures as a generic, coloured RuntimeError; we read each task's log
instead, so a failure names the step and shows the exception its own code raised. The
runner is a child process in its own process group: on Ctrl-C or SIGTERM the whole group
(kfp's executors, their shells, whatever a step started) is stopped, never left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kale_trace.codegen.kfp_compile import load_pipeline_module, pipeline_spec_of, task_names
from kale_trace.codegen.render import pipeline_arguments, render_pipeline
from kale_trace.errors import KaleTraceError
from kale_trace.executor.kernel import strip_ansi
from kale_trace.interrupts import deferred_signals
from kale_trace.outputs import write_error
from kale_trace.safe_text import redact
from kale_trace.tracer.dataflow import Dataflow

_NOTEBOOK_FRAME = re.compile(r'^\s*File "<[^>]* (cell \d+|import |definition of )')
_EXECUTING = re.compile(r" - INFO - Executing task '(?P<task>[^']+)'")
_FINISHED = re.compile(
    r" - (?:INFO|ERROR) - Task '(?P<task>[^']+)' finished with status (?P<status>\w+)"
)
STOP_GRACE = 5.0  # seconds the run's processes get after SIGTERM, before SIGKILL


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
    labels: dict[str, str] = field(default_factory=dict)  # KFP task name -> display name

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
    started: Callable[[Path], None] = lambda _: None,
) -> LocalRun:
    """Run the pipeline in this Python environment, in the notebook's folder.

    `started` is told the run's folder as soon as it exists, so that an interruption can
    say where the partial results are.
    """
    run_dir = _new_run_dir(runs_dir)
    started(run_dir)
    module = run_dir / "local_pipeline.py"
    args_file = run_dir / "arguments.json"
    try:
        module.write_text(render_pipeline(flow, local=True), encoding="utf-8")
        args_file.write_text(
            json.dumps(pipeline_arguments(flow, arguments or {})), encoding="utf-8"
        )
    except OSError as error:
        raise write_error(error, run_dir) from None
    _, pipeline = load_pipeline_module(module)
    labels = task_names(pipeline_spec_of(pipeline))  # KFP's task name -> the step's name
    root = run_dir / "outputs"
    watch = _Watch(labels, len(flow.steps), progress)
    try:
        with _workspace() as workspace:
            command = [
                sys.executable, "-m", "kale_trace.runners.local_child",
                str(module), str(root), workspace, str(args_file),
            ]  # fmt: skip
            code = watch.run(command, flow.notebook.path.parent)
    finally:
        _write_log(run_dir / "run.log", watch.full_log)
    tasks = watch.tasks
    run = LocalRun(root, tasks, code == 0 and all(t.status == "SUCCESS" for t in tasks), labels)
    if not run.succeeded:
        failed = next((t for t in tasks if t.status != "SUCCESS"), None)
        raise KaleTraceError(
            "the pipeline failed in this step" if failed else "the local run failed to start",
            notebook=str(flow.notebook.path),
            step=labels.get(failed.task, failed.task) if failed else None,
            details=user_traceback(failed.log if failed else [])
            or user_traceback(watch.full_log)  # kfp.local's own error, after the task
            or "(no traceback in the log)",
            fix=f"fix the cell named in the traceback; the full log of every task is in {run_dir}"
            + _partial_notebook(flow, root, labels),
        )
    return run


def _partial_notebook(flow: Dataflow, root: Path, labels: dict[str, str]) -> str:
    """A failed run still writes its output notebook, with the error in its cell (papermill)."""
    from kale_trace.runners.results import collect_results

    try:
        notebook = collect_results(flow, root, labels).notebook
    except KaleTraceError:
        return ""  # the disk is full: the log still says what happened
    return f", and the output notebook, up to the error, is {notebook}"


def _new_run_dir(runs_dir: Path) -> Path:
    """A fresh, timestamped folder under `runs_dir`; a clear error if it cannot be made."""
    runs_dir = runs_dir.resolve()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise KaleTraceError(
            f"{runs_dir} is a file, so the local run has nowhere to keep its results",
            fix=f"move {runs_dir} away: kale-trace keeps local runs in OUTDIR/runs/",
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    try:
        (runs_dir / stamp).mkdir(parents=True)
    except OSError as error:
        raise write_error(error, runs_dir / stamp) from None
    return runs_dir / stamp


@contextlib.contextmanager
def _workspace() -> Iterator[str]:
    """kfp.local's scratch folder, in the system's temporary folder."""
    try:
        folder = tempfile.TemporaryDirectory(prefix="kale-trace-workspace-")
    except OSError as error:
        where = tempfile.gettempdir()
        raise write_error(
            error, where, fix=f"free space in {where}, or set TMPDIR to a folder with room"
        ) from None
    with folder as path:
        yield path


def _write_log(path: Path, lines: list[str]) -> None:
    """The run's full log, without credentials; a full disk must not hide the run's result."""
    with contextlib.suppress(OSError):
        path.write_text(redact("\n".join(lines) + "\n"), encoding="utf-8")


class _Watch:
    """The child's output, read line by line into per-task logs and progress lines."""

    def __init__(self, labels: dict[str, str], steps: int, progress: Callable[[str], None]) -> None:
        self.labels = labels
        self.steps = steps
        self.progress = progress
        self.tasks: list[TaskResult] = []
        self.full_log: list[str] = []
        self._started = time.perf_counter()

    def run(self, command: list[str], cwd: Path) -> int:
        """Run the child in its own session; stop its whole process group however we leave."""
        with subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,  # out of the terminal's group, a read would stop it
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the group
        ) as child:
            try:
                assert child.stdout is not None
                for raw in child.stdout:
                    self.line(strip_ansi(raw.rstrip("\n")))
                return child.wait()
            finally:
                stop_group(child)

    def line(self, line: str) -> None:
        self.full_log.append(line)
        if match := _EXECUTING.search(line):
            self.tasks.append(TaskResult(match["task"]))
            self._started = time.perf_counter()
            self.progress(f"[{len(self.tasks)}/{self.steps}] {self._label(match)} ...")
        elif (match := _FINISHED.search(line)) and self.tasks:
            task = self.tasks[-1]
            task.status = match["status"]
            task.seconds = time.perf_counter() - self._started
            self.progress(
                f"[{len(self.tasks)}/{self.steps}] {self._label(match)}: "
                f"{task.status.lower()} ({task.seconds:.1f} s)"
            )
        elif self.tasks:
            self.tasks[-1].log.append(line)

    def _label(self, match: re.Match[str]) -> str:
        return self.labels.get(match["task"], match["task"])


def stop_group(child: subprocess.Popen[Any]) -> None:
    """Stop the child's process group: SIGTERM, then SIGKILL what is left after a grace."""
    with deferred_signals():
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not _group_alive(child.pid):
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signum)
            deadline = time.monotonic() + STOP_GRACE
            while time.monotonic() < deadline and _group_alive(child.pid):
                child.poll()  # reap the leader so it does not count as alive
                time.sleep(0.02)
        child.poll()


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, already dead, do not count)."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: ask the kernel, which counts zombies too
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in entries:
        if entry.isdigit() and _proc_group(entry) == pgid:
            return True
    return False


def _proc_group(pid: str) -> int | None:
    """The process group of a live /proc entry; None for zombies and vanished processes."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[2])


def user_traceback(log: list[str]) -> str:
    """The last traceback in a task log, from the first notebook frame on."""
    lines = [line[4:] if line.startswith("    ") else line for line in log]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    own = [line for line in lines if line.startswith("kale-trace: ")]  # the step's own words
    if own and (not starts or lines.index(own[-1]) > starts[-1]):
        return own[-1]
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
