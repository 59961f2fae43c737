"""Compile a generated pipeline module to KFP's YAML with the real KFP compiler."""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from pathlib import Path
from types import ModuleType

import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec
from kfp.dsl.graph_component import GraphComponent

from kale_trace.errors import KaleTraceError


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
    except Exception as exc:
        raise KaleTraceError(
            f"the KFP compiler rejected the generated pipeline: {type(exc).__name__}: {exc}",
            fix="this is a bug in kale-trace; please report it with the notebook",
        ) from exc
    _seal_header(yaml_path, pipeline)


# libyaml's safe loader when PyYAML was built with it: 10x faster on large pipelines.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Line breaks as YAML reads them.
_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _seal_header(yaml_path: Path, pipeline: GraphComponent) -> None:
    """Keep KFP's comment header a comment.

    KFP writes parameter defaults into the header raw: a default holding a line break ends
    the comment and the rest of the value becomes YAML (kfp 2.17). Every header line that
    does not start with `#` is commented; then the file must load back to the spec KFP built.
    """
    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    header = extract_comments_from_pipeline_spec(spec, pipeline.description)
    text = yaml_path.read_bytes().decode("utf-8")  # no newline translation: \r stays \r
    if text.startswith(header):
        lines = _YAML_LINE_BREAK.split(header.rstrip("\n"))
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
