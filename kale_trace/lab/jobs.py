"""Background jobs of the lab extension: one worker process per job, never in the server.

A job is `python -m kale_trace.lab.worker` in its own process group (its own session), so
a dry run or a local run never blocks the server's event loop, two jobs share nothing but
the machine, and cancel is one signal to the group. A reader thread turns the worker's JSON
lines into the job's event list, which the panel polls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIONS = ("compile", "run", "upload", "run-kfp")
STOP_GRACE = 10.0  # seconds the worker gets to stop its kernel after SIGTERM, then SIGKILL
_LOG_LINES = 2000


@dataclass
class Job:
    """One compile or run: its spec, what the worker said, and how it ended."""

    id: str
    action: str
    notebook: str  # relative to the server's root
    outdir: Path
    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    state: str = "running"  # running, succeeded, failed, cancelled
    cancel_requested: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self, since: int = 0) -> dict[str, Any]:
        """What the panel polls: new events from `since` on, and the final state."""
        with self.lock:
            events = self.events[since:]
            return {
                "id": self.id,
                "action": self.action,
                "notebook": self.notebook,
                "state": self.state,
                "pid": self.process.pid,
                "events": events,
                "next": since + len(events),
                "result": _last(self.events, ("compiled",)),
                "done": _last(self.events, ("done",)),
                "error": _last(self.events, ("error",)),
            }


def _last(events: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.get("kind") in kinds:
            return event
    return None


class JobManager:
    """The server's jobs by id; at most one running job per output folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, action: str, notebook: Path, outdir: Path, spec: dict[str, Any]) -> Job:
        """Start a worker for `action`; raises ValueError if the output folder is busy."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        with self._lock:
            busy = [j for j in self.jobs.values() if j.state == "running" and j.outdir == outdir]
            if busy:
                raise ValueError(f"job {busy[0].id} is already writing {outdir}")
            job = self._spawn(action, notebook, outdir, spec)
            self.jobs[job.id] = job
        threading.Thread(target=self._read, args=(job,), daemon=True).start()
        threading.Thread(target=self._read_log, args=(job,), daemon=True).start()
        return job

    def _spawn(self, action: str, notebook: Path, outdir: Path, spec: dict[str, Any]) -> Job:
        full = {**spec, "action": action, "notebook": str(notebook), "outdir": str(outdir)}
        full["root"] = str(self.root)
        process = subprocess.Popen(
            [sys.executable, "-m", "kale_trace.lab.worker"],
            cwd=notebook.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own group: cancel signals the whole job
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(full))
        process.stdin.close()
        relative = notebook.relative_to(self.root).as_posix()
        return Job(uuid.uuid4().hex[:12], action, relative, outdir, process)

    def _read(self, job: Job) -> None:
        """Worker events into the job, then its final state from the exit code."""
        assert job.process.stdout is not None
        for line in job.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"kind": "progress", "stage": "info", "message": line.rstrip()}
            with job.lock:
                job.events.append(event)
        code = job.process.wait()
        with job.lock:
            if job.cancel_requested or code in (130, 143, -signal.SIGTERM, -signal.SIGKILL):
                job.state = "cancelled"
            else:
                job.state = "succeeded" if code == 0 else "failed"
            if job.state == "failed" and not _last(job.events, ("error",)):
                tail = "\n".join(job.log[-20:])
                job.events.append(
                    {"kind": "error", "message": f"the job exited {code}", "text": tail}
                )

    def _read_log(self, job: Job) -> None:
        assert job.process.stderr is not None
        for line in job.process.stderr:
            with job.lock:
                job.log.append(line.rstrip("\n"))
                del job.log[:-_LOG_LINES]

    def cancel(self, job: Job) -> None:
        """SIGTERM the job's group (the worker stops its kernel), SIGKILL what is left."""
        with job.lock:
            if job.state != "running":
                return
            job.cancel_requested = True
        threading.Thread(target=_stop_group, args=(job.process,), daemon=True).start()

    def shutdown(self) -> None:
        """The server stops: no job outlives it."""
        for job in list(self.jobs.values()):
            if job.state == "running":
                job.cancel_requested = True
                _stop_group(job.process)


def _stop_group(process: subprocess.Popen[str]) -> None:
    from kale_trace.runners.local import _group_alive

    for signum, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 2.0)):
        if not _group_alive(process.pid):
            return
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(process.pid):
            time.sleep(0.05)
