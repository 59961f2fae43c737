"""Compile a generated pipeline module to KFP's YAML with the real KFP compiler."""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec
from kfp.dsl.graph_component import GraphComponent

from kale_trace.codegen.limits import check_argument_sizes
from kale_trace.errors import KaleTraceError
from kale_trace.safe_text import printable


def load_pipeline_module(path: Path) -> tuple[ModuleType, GraphComponent]:
    """Import a generated module from its file and return it with its one pipeline."""
    name = f"_kale_pipeline_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise KaleTraceError(f"cannot import the generated pipeline {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # KFP reads component sources through the module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise KaleTraceError(
            f"the generated pipeline {path.name} does not import: {type(exc).__name__}: {exc}",
            fix="this is a bug in kale-trace; please report it with the notebook",
        ) from exc
    finally:
        sys.modules.pop(name, None)
    pipelines = [v for v in vars(module).values() if isinstance(v, GraphComponent)]
    if len(pipelines) != 1:
        raise KaleTraceError(f"expected one pipeline in {path.name}, found {len(pipelines)}")
    return module, pipelines[0]


def compile_to_yaml(python_path: Path, yaml_path: Path) -> None:
    """KFP's own compiler turns the module's pipeline into the IR YAML."""
    _, pipeline = load_pipeline_module(python_path)
    try:
        compiler.Compiler().compile(pipeline, str(yaml_path))
    except OSError as exc:  # the disk, not the pipeline: full, read-only, not ours
        raise _naming(exc, yaml_path) from None
    except Exception as exc:
        raise KaleTraceError(
            f"the KFP compiler rejected the generated pipeline: {type(exc).__name__}: {exc}",
            fix="this is a bug in kale-trace; please report it with the notebook",
        ) from exc
    try:
        _seal_header(yaml_path, pipeline)
    except OSError as exc:
        raise _naming(exc, yaml_path) from None
    check_argument_sizes(pipeline_spec_of(pipeline))


def _naming(error: OSError, path: Path) -> OSError:
    """The OSError with the file it is about (a failed write() names none), for the caller
    (the output folder, which knows the file's final name) to report."""
    if error.filename is None:
        return OSError(error.errno, error.strerror or str(error), str(path))
    return error


def task_names(pipeline_spec: dict[str, Any]) -> dict[str, str]:
    """Each task of the pipeline's DAG, by the name KFP gives it, and its display name.

    KFP derives task names from component names with its own sanitisation and de-duplication
    (`a__b` and `a_b` become `a-b` and `a-b-2`); the compiled spec is the only sure source.
    """
    tasks = pipeline_spec.get("root", {}).get("dag", {}).get("tasks", {})
    return {name: (task.get("taskInfo") or {}).get("name") or name for name, task in tasks.items()}


def pipeline_spec_of(pipeline: GraphComponent) -> dict[str, Any]:
    """The pipeline's IR spec as the JSON-style dict KFP writes."""
    return json_format.MessageToDict(pipeline.pipeline_spec)


# libyaml's safe loader when PyYAML was built with it: 10x faster on large pipelines.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Line breaks as YAML reads them.
_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _seal_header(yaml_path: Path, pipeline: GraphComponent) -> None:
    """Keep KFP's comment header a comment, and the same in every process.

    KFP writes parameter defaults into the header raw: a default holding a line break ends
    the comment and the rest of the value becomes YAML (kfp 2.17). Every header line that
    does not start with `#` is commented, control characters are escaped; then the file must
    load back to the spec KFP built.
    """
    spec = pipeline_spec_of(pipeline)
    # KFP prints defaults in the order protobuf maps iterate, which differs between processes
    # (and even between two conversions in one); printed from a key-sorted spec, the header
    # is the same for the same pipeline every time. Any order gives the same characters.
    header = extract_comments_from_pipeline_spec(_sorted(spec), pipeline.description)
    text = yaml_path.read_bytes().decode("utf-8")  # no newline translation: \r stays \r
    if Counter(text[: len(header)]) == Counter(header):
        lines = _YAML_LINE_BREAK.split(header.rstrip("\n"))
        # YAML refuses control characters even in comments (a notebook named with an escape).
        lines = [printable(line) for line in lines]
        sealed = "\n".join(line if line.startswith("#") else f"#    {line}" for line in lines)
        text = sealed + "\n" + text[len(header) :]
        yaml_path.write_bytes(text.encode("utf-8"))
    try:
        documents = list(yaml.load_all(text, Loader=_SAFE_LOADER))
    except yaml.YAMLError as exc:
        documents = [exc]
    if not documents or documents[0] != spec:
        raise KaleTraceError(
            "the KFP compiler wrote a pipeline file that does not read back as the pipeline",
            details=str(documents[0]) if documents else "",
            fix="this is a bug in kale-trace or kfp; please report it with the notebook",
        )


def _sorted(value: Any) -> Any:
    """`value` with every mapping's keys in sorted order, recursively."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
