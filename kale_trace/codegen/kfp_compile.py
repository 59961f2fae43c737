"""Compile a generated pipeline module to KFP's YAML with the real KFP compiler."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

from kfp import compiler
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
