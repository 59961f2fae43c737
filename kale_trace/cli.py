"""The `kale-trace` command line: compile and run notebooks as KFP v2 pipelines.

Exit codes: 0 success, 1 a problem in the notebook or its run (a clear message, no Python
traceback unless --debug), 2 a usage error, 130 Ctrl-C, 143 SIGTERM. Everything printed goes
through safe_text: credentials masked, notebook-controlled control characters escaped.
"""

from __future__ import annotations

import errno
import functools
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from kale_trace import __version__
from kale_trace.codegen.packages import read_requirements
from kale_trace.compiler import CompileOptions, compile_notebook
from kale_trace.errors import KaleTraceError
from kale_trace.executor.parameters import parse_cli_value, read_values_file
from kale_trace.interrupts import Terminated, sigterm_unwinds
from kale_trace.outputs import write_error
from kale_trace.runners.cluster import DEFAULT_TIMEOUT, TIMEOUT_ENV
from kale_trace.safe_text import (
    add_cookies,
    add_environment,
    add_secret,
    add_url,
    for_terminal,
    public_url,
)

# What the command has written so far (output folder, run folder, a run on a cluster): an
# interruption says exactly that, never "no output was written" after something was.
_written: list[str] = []


def _echo(message: str, colour: str | None = None) -> None:
    """A progress line on stderr; everything printed goes through `_say` or here."""
    text = for_terminal(message)
    click.echo(click.style("kale-trace: ", fg="cyan") + click.style(text, fg=colour), err=True)


def _say(line: str) -> None:
    """A result line on stdout: redacted, and notebook-controlled text made harmless."""
    click.echo(for_terminal(line))


class _SafeLogRecords(logging.Filter):
    """Log lines that reach the terminal (Python's last-resort handler): redacted, neutralised.

    An interrupted dry run leaves nbclient's kernel-polling tasks behind; asyncio then logs
    "Task exception was never retrieved ... DeadKernelError" at exit, after our message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(("Task exception was never", "Future exception was never")):
            return False
        record.msg, record.args = for_terminal(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = for_terminal(logging.Formatter().formatException(record.exc_info))
        return True


def _quiet_logging() -> None:
    safe = _SafeLogRecords()
    for target in (logging.getLogger("asyncio"), logging.lastResort):
        if target is not None and safe.__class__ not in {type(f) for f in target.filters}:
            target.addFilter(safe)


def _trace_options(prefix: str = "") -> list[Callable[..., Any]]:
    """How a notebook is traced: parameters, samples, --no-trace, --cell-timeout."""
    return [
        click.option(
            "-p",
            "--parameter",
            "parameters",
            type=(str, str),
            multiple=True,
            metavar="NAME VALUE",
            help=f"{prefix}Set a pipeline parameter's default (a YAML scalar).",
        ),
        click.option(
            "-f",
            "--parameters",
            "parameters_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"{prefix}YAML file of pipeline parameter defaults.",
        ),
        click.option(
            "--sample-params",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"{prefix}YAML file of parameter values for the dry run only.",
        ),
        click.option(
            "--no-trace",
            is_flag=True,
            help=f"{prefix}Do not run the notebook: compile from static analysis alone.",
        ),
        click.option(
            "--cell-timeout",
            type=click.FloatRange(min=0, min_open=True),
            help=f"{prefix}Seconds a dry-run cell may take.",
        ),
    ]


def _apply(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """Apply click decorators in their listed order (the first is the first in --help)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _compile_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `compile` and `run`."""
    options = [
        click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option(
            "-o",
            "--outdir",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path(".kale"),
            show_default=True,
            help="Where to write the pipeline.",
        ),
        *_trace_options(),
        click.option("--base-image", help="Container image for every step."),
        click.option(
            "--no-install",
            is_flag=True,
            help="Install no packages in the steps: the image already has them all.",
        ),
        click.option(
            "--requirements",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Requirements file every step installs instead of the detected, pinned "
            "imports (include what the marshallers need, e.g. pyarrow, cloudpickle).",
        ),
        click.option("--debug", is_flag=True, help="Show Python tracebacks of errors."),
    ]
    return _apply(options)(function)


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn kale-trace errors into a message and exit code 1; Ctrl-C 130, SIGTERM 143."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        _written.clear()
        add_environment()  # KF_PIPELINES_TOKEN & co: never printed, whatever prints them
        _quiet_logging()
        try:
            with sigterm_unwinds():
                return function(*args, **kwargs)
        except KaleTraceError as error:
            _fail(error, debug)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as Terminated
            _interrupted(stop)
        except click.ClickException:
            raise  # usage errors found while reading the options: click's exit code 2
        except OSError as error:  # a file kale-trace could not read or write: the OS's reason
            _fail(_os_error(error), debug)
        except Exception as error:  # a bug in kale-trace: say so, briefly
            if debug:
                _traceback()
            click.echo(
                for_terminal(
                    f"error: internal error in kale-trace: {type(error).__name__}: {error}\n"
                    "rerun with --debug for the traceback, and please report it"
                ),
                err=True,
            )
            sys.exit(1)

    return wrapper


def _fail(error: KaleTraceError, debug: bool) -> NoReturn:
    if debug:
        _traceback()
    click.echo(click.style(for_terminal(error.render()), fg="red"), err=True)
    sys.exit(1)


def _traceback() -> None:
    click.echo(for_terminal(traceback.format_exc()), err=True, nl=False)


def _interrupted(stop: KeyboardInterrupt) -> NoReturn:
    """Say what was written before the interruption (and where), then exit 130 or 143."""
    terminated = isinstance(stop, Terminated)
    what, event = ("terminated (SIGTERM)", "signal") if terminated else ("interrupted", "Ctrl-C")
    if _written:
        said = f"written before the {event}: {'; '.join(_written)}"
    else:
        said = "no output was written"
    click.echo(for_terminal(f"kale-trace: {what}; {said}."), err=True)
    sys.exit(143 if terminated else 130)


def _os_error(error: OSError) -> KaleTraceError:
    """An OSError that escaped the stages: the path, the OS's reason, what to change."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return write_error(error)
    where = error.filename or "a file"
    return KaleTraceError(
        f"cannot use {where}: {error.strerror or error}", fix=f"check {where} and its folder"
    )


def _options(
    notebook: Path,
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    sample_params: Path | None,
    no_trace: bool,
    cell_timeout: float | None,
    base_image: str | None,
    no_install: bool = False,
    requirements: Path | None = None,
) -> CompileOptions:
    overrides: dict[str, Any] = {}
    try:
        if parameters_file is not None:
            overrides.update(read_values_file(parameters_file, "parameters"))
        overrides.update({name: parse_cli_value(value) for name, value in parameters})
        samples = read_values_file(sample_params, "sample parameters") if sample_params else {}
    except KaleTraceError as error:
        raise error.located(notebook=str(notebook)) from None
    if no_trace and samples:
        raise click.UsageError("--sample-params has no effect with --no-trace")
    if no_install and requirements is not None:
        raise click.UsageError("--no-install and --requirements exclude each other")
    return CompileOptions(
        overrides=overrides,
        samples=samples,
        trace=not no_trace,
        cell_timeout=cell_timeout,
        base_image=base_image,
        install=not no_install,
        requirements=read_requirements(requirements) if requirements is not None else None,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kale-trace")
def main() -> None:
    """Turn a tagged Jupyter notebook into a Kubeflow Pipelines v2 pipeline."""


@main.command("compile")
@_compile_options
@_guarded
def compile_command(notebook: Path, outdir: Path, debug: bool, **kwargs: Any) -> None:
    """Trace NOTEBOOK once and write OUTDIR/<pipeline>.py, .yaml and dataflow.json."""
    options = _options(notebook, **kwargs)
    compiled = compile_notebook(notebook, outdir, options, progress=_echo)
    _written.append(f"the compiled pipeline in {compiled.outdir}")
    if not options.trace:
        _echo("compiled from static analysis only (--no-trace): every edge is a guess")
    _report(compiled.dataflow)
    _say(f"pipeline:  {compiled.python_path}")
    _say(f"compiled:  {compiled.yaml_path}")
    _say(f"dataflow:  {compiled.dataflow_path}")
    _say(f"report:    {compiled.outdir / 'report.html'}")


def _cluster_option_list() -> list[Callable[..., Any]]:
    """The options of `run --kfp-host` (credentials also from kfp's environment variables)."""
    return [
        click.option("--kfp-host", metavar="URL", help="Run on this KFP API server, not locally."),
        click.option("--kfp-namespace", help="Profile namespace on multi-user Kubeflow."),
        click.option(
            "--kfp-token",
            envvar="KF_PIPELINES_TOKEN",
            show_envvar=True,
            help="Bearer token for the KFP API (prefer the environment variable).",
        ),
        click.option(
            "--kfp-cookies",
            envvar="KF_PIPELINES_COOKIES",
            show_envvar=True,
            help="Cookie header for the KFP API, e.g. authservice_session=...",
        ),
        click.option("--experiment", help="Experiment (default: metadata experiment_name)."),
        click.option("--run-name", help="Run name (default: pipeline name and UTC time)."),
        click.option("--wait", is_flag=True, help="Follow the run until it ends."),
        click.option(
            "--poll-interval",
            type=click.FloatRange(min=0),
            default=5.0,
            show_default=True,
            help="Seconds between status checks with --wait.",
        ),
        click.option(
            "--kfp-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            envvar=TIMEOUT_ENV,
            show_envvar=True,
            show_default=True,
            metavar="SECONDS",
            help="Longest the KFP server may take to accept the run (all requests together), "
            "and each status check with --wait.",
        ),
    ]


def _cluster_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`run`'s cluster options, gathered into one `cluster` argument (None: run locally)."""

    @functools.wraps(function)
    def wrapper(**kwargs: Any) -> Any:
        from kale_trace.runners.cluster import ClusterOptions

        host = kwargs.pop("kfp_host")
        given = {k: kwargs.pop(k) for k in ("kfp_namespace", "experiment", "run_name", "wait")}
        add_url(host)  # before anything runs: no message may show these
        add_secret(kwargs["kfp_token"])
        add_cookies(kwargs["kfp_cookies"])
        cluster = ClusterOptions(
            host=host or "",
            namespace=given["kfp_namespace"],
            experiment=given["experiment"],
            run_name=given["run_name"],
            wait=given["wait"],
            token=kwargs.pop("kfp_token"),
            cookies=kwargs.pop("kfp_cookies"),
            poll_interval=kwargs.pop("poll_interval"),
            timeout=kwargs.pop("kfp_timeout"),
        )
        if not host and any(given.values()):
            used = ", ".join("--" + k.replace("_", "-") for k, v in given.items() if v)
            raise click.UsageError(f"{used} need --kfp-host (without it the run is local)")
        return function(cluster=cluster if host else None, **kwargs)

    return _apply(_cluster_option_list())(wrapper)


@main.command("run")
@_compile_options
@_cluster_options
@_guarded
def run_command(notebook: Path, outdir: Path, debug: bool, cluster: Any, **kwargs: Any) -> None:
    """Compile NOTEBOOK, then run it locally with kfp.local, or on a cluster with --kfp-host."""
    from kale_trace.runners.local import run_locally

    options = _options(notebook, **kwargs)
    compiled = compile_notebook(notebook, outdir, options, progress=_echo)
    _written.append(f"the compiled pipeline in {compiled.outdir}")
    _report(compiled.dataflow)
    if cluster is not None:
        from kale_trace.runners.cluster import run_on_cluster

        _echo(f"running on the KFP server at {public_url(cluster.host)}")
        remote = run_on_cluster(compiled, cluster, progress=_echo, wrote=_written.append)
        _say(f"pipeline:  {compiled.python_path}")
        _say(f"compiled:  {compiled.yaml_path}")
        _say(f"run:       {remote.run_id}")
        _say(f"url:       {remote.url}")
        if remote.state:
            _say(f"state:     {remote.state}")
        return
    _echo(f"running {len(compiled.dataflow.steps)} steps locally with kfp.local")
    run = run_locally(
        compiled.dataflow,
        compiled.outdir / "runs",
        progress=_echo,
        started=lambda folder: _written.append(f"the local run's partial results in {folder}"),
    )
    _say(f"pipeline:  {compiled.python_path}")
    _say(f"compiled:  {compiled.yaml_path}")
    _say(f"outputs:   {run.run_dir}")
    paths = list(run.outputs())
    for path in paths[:_LISTED]:
        _say(f"  {path.relative_to(run.run_dir)}")
    if len(paths) > _LISTED:
        _say(f"  ... and {len(paths) - _LISTED} more in {run.run_dir}")
    _run_summary(compiled.dataflow, run)


# Lists longer than this are cut on the console: the report and the run folder have them all.
_LISTED = 20


def _run_summary(flow: Any, run: Any) -> None:
    """Each step's state and time, the metrics table, the output notebook and the reports."""
    from kale_trace.runners.results import collect_results

    results = collect_results(flow, run.run_dir, run.labels)
    _say("steps:")
    for task in run.tasks:
        _say(f"  {run.labels.get(task.task, task.task):<24} {task.status.lower():<9} "
             f"{task.seconds:7.1f} s")  # fmt: skip
    if results.metrics:
        width = max(len(name) for name in results.metrics)
        _say("metrics:")
        for name, value in results.metrics.items():
            _say(f"  {name:<{width}}  {value:.6g}")
    _say(f"notebook:  {results.notebook}")
    for step, path in results.reports.items():
        _say(f"report:    {flow.step(step).display_name}: {path}")


def _report(flow: Any) -> None:
    for note in flow.notebook.notes:
        where = f"cell {note.cell}: " if note.cell is not None else ""
        text = f"{'warning' if note.warning else 'note'}: {where}{note.message}"
        _echo(text, colour="yellow" if note.warning else None)
    for step in flow.steps:
        inputs = ", ".join(f"{f.variable}<-{f.producer}" for f in step.inputs[:_LISTED]) or "-"
        if len(step.inputs) > _LISTED:
            inputs += f" and {len(step.inputs) - _LISTED} more (report.md lists them all)"
        _echo(f"step {step.display_name}: inputs {inputs}")
    for note in flow.notes:
        where = f"step {note['step']}: " if note["step"] else ""
        _echo(f"note: {where}{note['message']}")
    for warning in flow.warnings:
        where = f"step {warning['step']}: " if warning["step"] else ""
        _echo(f"warning: {where}{warning['message']}", colour="yellow")


_REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".json": "json"}


@main.command("report")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json"]),
    help="Output format (default: from -o's suffix, else md).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here instead of standard output.",
)
@click.option(
    "--against",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="OLD.json",
    help="An older dataflow.json: report what changed since it.",
)
@_apply(_trace_options("Notebook only: "))
@click.option("--debug", is_flag=True, help="Show Python tracebacks of errors.")
def report_command(source: Path, **kwargs: Any) -> None:
    """Write the type report of SOURCE (a notebook, traced first, or a dataflow.json)."""
    from kale_trace.report import is_notebook

    given = [k for k in _NOTEBOOK_ONLY if kwargs[k]]
    if given and not is_notebook(source):
        used = ", ".join(_NOTEBOOK_ONLY[k] for k in given)
        raise click.UsageError(f"{used}: these apply to a notebook; {source} is a dataflow.json")
    if kwargs["no_trace"] and kwargs["sample_params"]:
        raise click.UsageError("--sample-params has no effect with --no-trace")
    _write_report(source, **kwargs)


_NOTEBOOK_ONLY = {
    "parameters": "-p",
    "parameters_file": "-f",
    "sample_params": "--sample-params",
    "no_trace": "--no-trace",
    "cell_timeout": "--cell-timeout",
}


@_guarded
def _write_report(
    source: Path,
    fmt: str | None,
    output: Path | None,
    against: Path | None,
    debug: bool,
    **kwargs: Any,
) -> None:
    from kale_trace.compiler import trace_notebook
    from kale_trace.dataflow_json import to_dict
    from kale_trace.report import diff, from_dict, is_notebook, load_report, render, render_diff

    fmt = fmt or (_REPORT_SUFFIXES.get(output.suffix.lower(), "md") if output else "md")
    if is_notebook(source):
        flow = trace_notebook(source, _options(source, base_image=None, **kwargs), _echo)
        report = from_dict(to_dict(flow), where=str(source))
    else:
        report = load_report(source)
    if against is not None:
        text = render_diff(diff(load_report(against), report, str(against), str(source)), fmt)
    else:
        text = render(report, fmt)
    if output is None:  # on a terminal, escapes in notebook text must not act
        click.echo(for_terminal(text) if sys.stdout.isatty() else text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise write_error(error, error.filename or output) from None
    _echo(f"report: {output}")


if __name__ == "__main__":
    main()
