"""The `kale-trace` command line: compile and run notebooks as KFP v2 pipelines.

Exit codes: 0 success, 1 a problem in the notebook or its run (a clear message, no Python
traceback unless --debug), 2 a usage error.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kale_trace import __version__
from kale_trace.compiler import CompileOptions, compile_notebook
from kale_trace.errors import KaleTraceError
from kale_trace.executor.parameters import parse_cli_value, read_values_file


def _echo(message: str) -> None:
    click.echo(click.style("kale-trace: ", fg="cyan") + message, err=True)


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
        click.option(
            "-p",
            "--parameter",
            "parameters",
            type=(str, str),
            multiple=True,
            metavar="NAME VALUE",
            help="Set a pipeline parameter's default (a YAML scalar).",
        ),
        click.option(
            "-f",
            "--parameters",
            "parameters_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="YAML file of pipeline parameter defaults.",
        ),
        click.option(
            "--sample-params",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="YAML file of parameter values for the dry run only.",
        ),
        click.option(
            "--no-trace",
            is_flag=True,
            help="Do not run the notebook: compile from static analysis alone.",
        ),
        click.option(
            "--cell-timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds a dry-run cell may take.",
        ),
        click.option("--base-image", help="Container image for every step."),
        click.option("--debug", is_flag=True, help="Show Python tracebacks of errors."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn kale-trace errors into a message and exit code 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        try:
            return function(*args, **kwargs)
        except KaleTraceError as error:
            if debug:
                traceback.print_exc()
            click.echo(click.style(error.render(), fg="red"), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("kale-trace: interrupted; no output was written.", err=True)
            sys.exit(130)
        except Exception as error:  # a bug in kale-trace: say so, briefly
            if debug:
                traceback.print_exc()
            click.echo(
                f"error: internal error in kale-trace: {type(error).__name__}: {error}\n"
                "rerun with --debug for the traceback, and please report it",
                err=True,
            )
            sys.exit(1)

    return wrapper


def _options(
    notebook: Path,
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    sample_params: Path | None,
    no_trace: bool,
    cell_timeout: float | None,
    base_image: str | None,
) -> CompileOptions:
    overrides: dict[str, Any] = {}
    if parameters_file is not None:
        overrides.update(read_values_file(parameters_file, "parameters"))
    overrides.update({name: parse_cli_value(value) for name, value in parameters})
    samples = read_values_file(sample_params, "sample parameters") if sample_params else {}
    if no_trace and samples:
        raise click.UsageError("--sample-params has no effect with --no-trace")
    return CompileOptions(
        overrides=overrides,
        samples=samples,
        trace=not no_trace,
        cell_timeout=cell_timeout,
        base_image=base_image,
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
    if not options.trace:
        _echo("compiled from static analysis only (--no-trace): every edge is a guess")
    _report(compiled.dataflow)
    click.echo(f"pipeline:  {compiled.python_path}")
    click.echo(f"compiled:  {compiled.yaml_path}")
    click.echo(f"dataflow:  {compiled.dataflow_path}")


@main.command("run")
@_compile_options
@_guarded
def run_command(notebook: Path, outdir: Path, debug: bool, **kwargs: Any) -> None:
    """Compile NOTEBOOK, then run the pipeline locally with KFP's local runner."""
    from kale_trace.runners.local import run_locally

    options = _options(notebook, **kwargs)
    compiled = compile_notebook(notebook, outdir, options, progress=_echo)
    _report(compiled.dataflow)
    _echo(f"running {len(compiled.dataflow.steps)} steps locally with kfp.local")
    run = run_locally(compiled.dataflow, compiled.outdir / "runs", progress=_echo)
    click.echo(f"pipeline:  {compiled.python_path}")
    click.echo(f"compiled:  {compiled.yaml_path}")
    click.echo(f"outputs:   {run.run_dir}")
    for path in run.outputs():
        click.echo(f"  {path.relative_to(run.run_dir)}")


def _report(flow: Any) -> None:
    for step in flow.steps:
        inputs = ", ".join(f"{f.variable}<-{f.producer}" for f in step.inputs) or "-"
        _echo(f"step {step.display_name}: inputs {inputs}")
    for warning in flow.warnings:
        _echo(click.style(f"warning: step {warning['step']}: {warning['message']}", fg="yellow"))


if __name__ == "__main__":
    main()
