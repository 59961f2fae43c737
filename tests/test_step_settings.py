"""Kale's per-step settings reach the compiled pipeline, and bad ones are refused early.

Compiled with the real KFP compiler (statically, --no-trace: settings do not depend on the
dry run), then read back from the YAML: the executor's container spec, the task's retry and
caching policy, and the kubernetes platform spec.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from kale_trace.codegen.render import render_pipeline
from kale_trace.errors import KaleTraceError
from kale_trace.notebook.loader import load_notebook

HOSTILE = "\"'); import os; os.system('boom') #"

SETTINGS_CELLS = [
    ("imports", "import json"),
    ("pipeline-parameters", "rows = 3"),
    (
        [
            "step:load", "limit:cpu:500m", "limit:memory:2Gi", "label:team:ml",
            "annotation:example.com/owner:a b: c", f"annotation:note:{HOSTILE}",
            "secret:db-creds:password:DB_PASSWORD", "secret:tls-certs:/etc/tls", "retries:3",
            "cache:disabled",
        ],
        "x = rows",
    ),
    (["step:train", "prev:load", "limit:gpu:2", "image:ghcr.io/org/trainer:1.0"], "y = x + 1"),
    (["step:report", "prev:train", "cache:enabled", "label:env:prod"], "z = y"),
]  # fmt: skip
SETTINGS_METADATA = {
    "base_image": "python:3.11-slim",
    "volumes": [
        {"type": "pvc", "name": "data", "mount_point": "/data", "size": 1, "size_type": "Gi"},
        {"type": "new_pvc", "name": "scratch", "mount_point": "/scratch", "size": 5,
         "size_type": "Gi", "volume_access_mode": "rwm"},
    ],
    "steps_defaults": ["label:env:dev", "retries:1"],
    "enable_caching": False,
}  # fmt: skip


def _documents(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and the kubernetes executors of the platform spec."""
    pipeline, platform = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture
def compiled(notebook, compile_nb):
    return compile_nb(notebook(SETTINGS_CELLS, metadata=SETTINGS_METADATA), trace=False)


def test_resources_image_retries_and_caching_reach_the_yaml(compiled):
    spec, _ = _documents(compiled.yaml_path)
    executors = spec["deploymentSpec"]["executors"]
    load = executors["exec-load"]["container"]
    assert load["resources"]["resourceCpuLimit"] == "500m"
    assert load["resources"]["resourceMemoryLimit"] == "2Gi"
    assert load["image"] == "python:3.11-slim"  # metadata base_image
    train = executors["exec-train"]["container"]
    assert train["image"] == "ghcr.io/org/trainer:1.0"  # image: tag beats the base image
    accelerator = train["resources"]["accelerator"]
    # limit:gpu is Kale's shorthand for nvidia.com/gpu
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "2")
    assert "resources" not in executors["exec-report"]["container"]

    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["load"]["retryPolicy"]["maxRetryCount"] == 3  # the step's tag wins
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 1  # steps_defaults
    assert tasks["load"]["cachingOptions"] == {}  # cache:disabled
    assert tasks["train"]["cachingOptions"] == {}  # enable_caching: false in the metadata
    assert tasks["report"]["cachingOptions"] == {"enableCache": True}  # cache:enabled wins


def test_labels_annotations_secrets_and_volumes_reach_the_platform_spec(compiled):
    spec, executors = _documents(compiled.yaml_path)
    load = executors["exec-load"]
    assert load["podMetadata"]["labels"] == {"env": "dev", "team": "ml"}
    assert load["podMetadata"]["annotations"] == {"example.com/owner": "a b: c", "note": HOSTILE}
    assert executors["exec-report"]["podMetadata"]["labels"] == {"env": "prod"}  # tag wins
    (as_env,) = load["secretAsEnv"]
    assert as_env["secretName"] == "db-creds"
    assert as_env["keyToEnv"] == [{"envVar": "DB_PASSWORD", "secretKey": "password"}]
    (as_volume,) = load["secretAsVolume"]
    assert as_volume["secretName"] == "tls-certs" and as_volume["mountPath"] == "/etc/tls"
    assert "secretAsEnv" not in executors["exec-train"]

    for step in ("exec-load", "exec-train", "exec-report"):
        mounts = {m["mountPath"]: m for m in executors[step]["pvcMount"]}
        assert set(mounts) == {"/data", "/scratch"}
        assert mounts["/data"]["pvcNameParameter"]["runtimeValue"]["constant"] == "data"
        created = mounts["/scratch"]["pvcNameParameter"]["taskOutputParameter"]
        assert created["producerTask"] == "createpvc"
    create = spec["root"]["dag"]["tasks"]["createpvc"]
    arguments = {
        k: v["runtimeValue"]["constant"] for k, v in create["inputs"]["parameters"].items()
    }
    assert arguments == {
        "access_modes": ["ReadWriteMany"],
        "pvc_name_suffix": "-scratch",
        "size": "5Gi",
    }
    assert create["cachingOptions"] == {}  # a cached claim would belong to an earlier run


def test_hostile_values_stay_inert_literals(compiled):
    source = compiled.python_path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert HOSTILE in strings
    helpers = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "_kale_Cells"]
    in_helpers = {id(n) for helper in helpers for n in ast.walk(helper)}  # their own imports
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in in_helpers
        for alias in node.names
    }
    assert "os" not in imported
    assert "from kfp import kubernetes\n" in source


def test_local_rendering_keeps_only_what_kfp_local_honours(notebook, trace):
    flow = trace(notebook(SETTINGS_CELLS, metadata=SETTINGS_METADATA), trace=False)
    source = render_pipeline(flow, local=True)
    assert "kubernetes" not in source and "set_cpu_limit" not in source
    assert "load_task.set_retry(num_retries=3)" in source
    assert "load_task.set_caching_options(False)" in source


def test_settings_free_notebook_imports_no_kubernetes(notebook, trace):
    flow = trace(notebook([("step:a", "x = 1"), ("step:b", "y = x")]), trace=False)
    source = render_pipeline(flow)
    assert "kubernetes" not in source and "set_retry" not in source


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("limit:memory:1.5Gi", "memory quantity"),
        ("limit:cpu:two", "CPU quantity"),
        ("limit:disk:10Gi", "unknown resource"),
        ("limit:nvidia.com/gpu:0.5", "whole number"),
        ("label:bad key:x", "label key"),
        ("label:team:has spaces", "label value"),
        ("annotation:/x:y", "annotation key"),
        ("secret:Bad_Name:key:ENV", "Secret name"),
        ("secret:creds:key:1ENV", "environment variable"),
        ("secret:creds", "bad tag"),
        ("secret:creds:relative/path", "bad tag"),
        ("image:bad image", "container image"),
    ],
)
def test_bad_step_settings_name_notebook_cell_and_fix(notebook, tag, words):
    path = notebook([("imports", "import json"), (["step:a", tag], "x = 1")])
    with pytest.raises(KaleTraceError) as raised:
        load_notebook(path)
    error = raised.value
    assert words in error.message
    assert error.notebook == str(path) and error.cell == 1 and error.fix


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ({"volumes": [{"type": "nfs", "name": "a", "mount_point": "/a"}]}, "type 'nfs'"),
        (
            {
                "volumes": [
                    {
                        "type": "new_pvc",
                        "name": "a",
                        "mount_point": "/a",
                        "size": 1,
                        "size_type": "Gi",
                        "volume_access_mode": ["rwo"],
                    }
                ]
            },
            "volume_access_mode",
        ),
        (
            {"volumes": [{"type": "pvc", "name": "a\n", "mount_point": "/a"}]},
            "PersistentVolumeClaim name",
        ),
        ({"pipeline_description": 42}, "not a string"),
        ({"experiment_name": ["x"]}, "not a string"),
        ({"timeout": "soon"}, "timeout"),
        ({"security_context": {"runAsUser": "root"}}, "security_context"),
        (
            {"volumes": [{"type": "pvc", "name": "Bad Name", "mount_point": "/a"}]},
            "PersistentVolumeClaim name",
        ),
        ({"volumes": [{"type": "pvc", "name": "a", "mount_point": "rel"}]}, "mount path"),
        ({"volumes": [{"type": "new_pvc", "name": "a", "mount_point": "/a"}]}, "size"),
        ({"volumes": "data"}, "must be a list"),
        ({"steps_defaults": ["limit:memory:lots"]}, "steps_defaults"),
        ({"steps_defaults": ["step:a"]}, "steps_defaults"),
        ({"base_image": "not an image"}, "container image"),
        ({"enable_caching": "yes"}, "enable_caching"),
    ],
)
def test_bad_settings_metadata_is_refused(notebook, metadata, words):
    path = notebook([("step:a", "x = 1")], metadata=metadata)
    with pytest.raises(KaleTraceError) as raised:
        load_notebook(path)
    assert words in raised.value.message
    assert raised.value.notebook == str(path) and raised.value.fix


def test_bad_base_image_flag_is_refused(notebook, compile_nb):
    with pytest.raises(KaleTraceError, match="--base-image"):
        compile_nb(notebook([("step:a", "x = 1")]), trace=False, base_image="x\ny")


def test_two_accelerator_types_in_one_step_are_refused(notebook):
    path = notebook([(["step:a", "limit:nvidia.com/gpu:1", "limit:amd.com/gpu:1"], "x = 1")])
    with pytest.raises(KaleTraceError, match="two accelerator types") as raised:
        load_notebook(path)
    assert raised.value.cell == 0 and raised.value.fix
