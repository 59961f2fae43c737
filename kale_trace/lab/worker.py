"""One lab job in its own process: the CLI's compile / run, progress as JSON lines.

The server starts this module in a new process group, so cancelling a job is one signal
to the group; SIGTERM unwinds like Ctrl-C in the CLI, which stops the dry run's kernel and
a local run's process group. Events go to the original stdout; everything else anything
prints goes to stderr, so a notebook's print cannot corrupt the event stream.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from kale_trace.errors import KaleTraceError
from kale_trace.interrupts import sigterm_unwinds
from kale_trace.safe_text import add_environment, for_terminal

_LOCAL_STEP = re.compile(
    r"^\[(?P<n>\d+)/(?P<of>\d+)\] (?P<step>.+?)(?::\s(?P<state>\w+).*| \.\.\.)$"
)
_STAGES = (
    ("dry run: ", "dry-run"),
    ("round trip", "round-trip"),
    ("compiling", "compile"),
    ("notebook ", "load"),
    ("uploaded", "upload"),
    ("experiment ", "upload"),
    ("started run", "cluster-run"),
    ("running on the KFP", "upload"),
)


def stage_of(message: str) -> dict[str, Any]:
    """Classify a progress line of the library into a stage the panel shows as a row."""
    match = _LOCAL_STEP.match(message)
    if match:
        state = (match["state"] or "running").lower()
        return {"stage": "local-step", "step": match["step"], "state": state}
    for prefix, stage in _STAGES:
        if message.startswith(prefix):
            event: dict[str, Any] = {"stage": stage}
            if stage == "dry-run":
                event["step"] = message[len(prefix) :].strip()
            return event
    if message.startswith(("run ", "step ")) and "state" in message:
        return {"stage": "cluster-run"}
    return {"stage": "info"}


class Events:
    """The event stream to the server: one JSON object a line, flushed at once."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def send(self, kind: str, **fields: Any) -> None:
        fields.update(kind=kind, time=time.time())
        self.out.write(json.dumps(fields, default=str) + "\n")
        self.out.flush()

    def progress(self, message: str) -> None:
        self.send("progress", message=for_terminal(message), **stage_of(message))


def error_fields(error: KaleTraceError, root: Path) -> dict[str, Any]:
    """A located error as JSON: notebook (relative to the server root), cell, step, fix."""
    notebook = error.notebook
    if notebook:
        try:
            notebook = Path(notebook).resolve().relative_to(root).as_posix()
        except ValueError:
            pass
    return {
        "message": for_terminal(error.message),
        "notebook": notebook,
        "cell": error.cell,
        "cell_source": for_terminal(error.cell_source) if error.cell_source else None,
        "step": error.step,
        "fix": for_terminal(error.fix) if error.fix else None,
        "details": for_terminal(error.details) if error.details else None,
        "text": for_terminal(error.render()),
    }


def _compile(spec: dict[str, Any], events: Events) -> Any:
    """The CLI's own option reading and compile (kale_trace.cli._options, compile_notebook)."""
    from kale_trace.cli import _options
    from kale_trace.compiler import compile_notebook

    notebook = Path(spec["notebook"])
    sample = spec.get("sample_params")
    options = _options(
        notebook,
        parameters=tuple((str(k), str(v)) for k, v in (spec.get("parameters") or {}).items()),
        parameters_file=None,
        sample_params=Path(sample) if sample else None,
        no_trace=bool(spec.get("no_trace")),
        cell_timeout=spec.get("cell_timeout"),
        base_image=spec.get("base_image") or None,
    )
    outdir = Path(spec["outdir"])
    before = _previous_dataflow(outdir)
    compiled = compile_notebook(notebook, outdir, options, progress=events.progress)
    events.send(
        "compiled",
        flow=json.loads(compiled.dataflow_path.read_text(encoding="utf-8")),
        changes=_changes(before, compiled.dataflow_path),
        outdir=str(compiled.outdir),
        python=str(compiled.python_path),
        yaml=str(compiled.yaml_path),
        dataflow=str(compiled.dataflow_path),
        report_html=str(compiled.outdir / "report.html"),
        report_md=str(compiled.outdir / "report.md"),
    )
    return compiled


def _previous_dataflow(outdir: Path) -> dict[str, Any] | None:
    """The last compile's dataflow.json, read before the compile replaces the folder."""
    try:
        return json.loads((outdir / "dataflow.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _changes(before: dict[str, Any] | None, after: Path) -> str | None:
    """What changed since the last compile: `kale-trace report --against`'s Markdown."""
    if before is None:
        return None
    from kale_trace.report import diff, from_dict, load_report, render_diff

    try:
        old = from_dict(before, where="the previous compile")
    except KaleTraceError:
        return None  # written by another kale-trace version: nothing to compare with
    return render_diff(diff(old, load_report(after), "previous", "this compile"), "md")


def _run_local(compiled: Any, events: Events) -> dict[str, Any]:
    from kale_trace.runners.local import run_locally

    events.progress(f"running {len(compiled.dataflow.steps)} steps locally with kfp.local")
    run = run_locally(compiled.dataflow, compiled.outdir / "runs", progress=events.progress)
    steps = [{"task": t.task, "state": t.status, "seconds": t.seconds} for t in run.tasks]
    return {"run_dir": str(run.run_dir), "outputs": [str(p) for p in run.outputs()], "tasks": steps}


def _run_cluster(compiled: Any, spec: dict[str, Any], events: Events) -> dict[str, Any]:
    """The CLI's cluster path: credentials from the server's environment, never the browser."""
    from kale_trace.runners.cluster import DEFAULT_TIMEOUT, ClusterOptions, run_on_cluster

    host = spec.get("kfp_host") or os.environ.get("KF_PIPELINES_ENDPOINT") or ""
    if not host:
        raise KaleTraceError(
            "no KFP host: the server's environment has no KF_PIPELINES_ENDPOINT and the panel "
            "gave none",
            notebook=spec["notebook"],
            fix="enter the KFP API address in the panel (e.g. http://localhost:8080), or start "
            "jupyter lab with KF_PIPELINES_ENDPOINT set",
        )
    options = ClusterOptions(
        host=host,
        experiment=spec.get("experiment") or None,
        run_name=spec.get("run_name") or None,
        namespace=spec.get("kfp_namespace") or os.environ.get("KF_PIPELINES_NAMESPACE"),
        token=os.environ.get("KF_PIPELINES_TOKEN"),
        cookies=os.environ.get("KF_PIPELINES_COOKIES"),
        wait=bool(spec.get("wait")),
        timeout=float(spec.get("kfp_timeout") or DEFAULT_TIMEOUT),
    )
    events.progress("running on the KFP server")
    remote = run_on_cluster(compiled, options, progress=events.progress)
    return {"run_id": remote.run_id, "url": remote.url, "state": remote.state}


def run_job(spec: dict[str, Any], events: Events) -> int:
    """Do the job; the exit code is the CLI's: 0 done, 1 located error, 130/143 stopped."""
    root = Path(spec.get("root") or ".").resolve()
    try:
        with sigterm_unwinds():
            compiled = _compile(spec, events)
            result: dict[str, Any] = {}
            if spec["action"] == "run":
                result = _run_local(compiled, events)
            elif spec["action"] in ("upload", "run-kfp"):
                result = _run_cluster(compiled, spec, events)
            events.send("done", **result)
            return 0
    except KaleTraceError as error:
        events.send("error", **error_fields(error.located(notebook=spec["notebook"]), root))
        return 1
    except click.UsageError as error:
        events.send("error", message=error.message, text=f"error: {error.message}")
        return 1
    except KeyboardInterrupt:
        events.send("cancelled")
        return 143
    except Exception as error:  # a bug in kale-trace: say so, as the CLI does
        text = f"internal error in kale-trace: {type(error).__name__}: {error}"
        events.send("error", message=for_terminal(text), text=for_terminal(text))
        return 1


def main() -> int:
    """Read the job's spec (JSON) from stdin, then keep stdout for events only."""
    spec = json.loads(sys.stdin.read())
    events = Events(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # prints of libraries and notebooks go to stderr, the job's log
    sys.stdout = sys.stderr
    add_environment()  # KF_PIPELINES_TOKEN & co: never in an event
    return run_job(spec, events)


if __name__ == "__main__":
    sys.exit(main())
