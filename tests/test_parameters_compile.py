"""Pipeline parameters of every kind, as the compiled YAML declares them.

The compiled defaults are the notebook's values or the -p/-f overrides; the sample values
drive the dry run only and must never reach the pipeline module or its YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kale_trace.cli import main
from kale_trace.codegen.render import _JSON_PARAMETER
from kale_trace.compiler import CompileOptions, trace_notebook
from kale_trace.errors import KaleTraceError
from kale_trace.executor.parameters import parse_cli_value, read_values_file

PARAMETERS = """\
rows = 1000
ratio = 0.25
name = "iris"
verbose = False
layers = [64, 32]
config = {"lr": 0.01, "tags": ["a"]}
offset = -3
seed = None
threshold = None
label = "plain"
"""
USE_ALL = "used = (rows, ratio, name, verbose, layers, config, offset, seed, threshold, label)"
# Distinctive values that only the dry run may see.
SAMPLES = {
    "rows": 987654,
    "name": "SAMPLE-ZEBRA",
    "config": {"lr": 0.123456},
    "seed": 424242,
    "layers": [777001],
}


def _root_inputs(yaml_path: Path) -> dict[str, Any]:
    spec = next(yaml.safe_load_all(yaml_path.read_text(encoding="utf-8")))
    return spec["root"]["inputDefinitions"]["parameters"]


@pytest.fixture
def parameters_notebook(notebook):
    return notebook([("pipeline-parameters", PARAMETERS), ("step:use", USE_ALL)])


def test_every_kind_of_parameter_compiles_with_the_notebook_or_override_default(
    parameters_notebook, compile_nb, tmp_path
):
    values_file = tmp_path / "values.yaml"
    values_file.write_text("layers: [8, 4]\nverbose: true\n", encoding="utf-8")
    overrides = read_values_file(values_file, "parameters")
    for name, text in [("offset", "-7"), ("ratio", "1e-3"), ("label", "yes"), ("threshold", "0.5")]:
        overrides[name] = parse_cli_value(text)  # what `-p NAME VALUE` hands over

    compiled = compile_nb(parameters_notebook, overrides=overrides, samples=SAMPLES)

    inputs = _root_inputs(compiled.yaml_path)
    kinds = {name: spec["parameterType"] for name, spec in inputs.items()}
    defaults = {name: spec.get("defaultValue") for name, spec in inputs.items()}
    assert kinds == {
        "rows": "NUMBER_INTEGER",
        "ratio": "NUMBER_DOUBLE",
        "name": "STRING",
        "verbose": "BOOLEAN",
        "layers": "STRING",  # lists and dicts travel as JSON text, exactly (ints stay ints)
        "config": "STRING",
        "offset": "NUMBER_INTEGER",
        "seed": "STRING",  # None in the notebook: JSON text, "null" by default
        "threshold": "NUMBER_DOUBLE",  # None in the notebook, typed by its override
        "label": "STRING",
    }
    assert defaults == {
        "rows": 1000,
        "ratio": 0.001,  # -p ratio 1e-3: a float, although YAML 1.1 reads it as text
        "name": "iris",
        "verbose": True,  # -f
        "layers": "[8, 4]",  # -f
        "config": '{"lr": 0.01, "tags": ["a"]}',
        "offset": -7,  # -p offset -7
        "seed": "null",
        "threshold": 0.5,
        "label": "yes",  # a str parameter keeps the text; YAML alone would make it True
    }
    flow = json.loads(compiled.dataflow_path.read_text(encoding="utf-8"))
    recorded = {p["name"]: (p["default"], p["sample"]) for p in flow["parameters"]}
    assert recorded["rows"] == (1000, 987654)  # the dry run really used the sample
    assert recorded["seed"] == (None, 424242)

    for text in (compiled.yaml_path, compiled.python_path):
        source = text.read_text(encoding="utf-8")
        for leaked in ("987654", "SAMPLE-ZEBRA", "123456", "424242", "777001"):
            assert leaked not in source, f"sample value {leaked} leaked into {text.name}"


def test_optional_parameter_decodes_its_json_text():
    namespace: dict[str, Any] = {}
    exec(_JSON_PARAMETER, namespace)
    decode = namespace["_kale_json_parameter"]
    assert decode("p", "null", None) is None
    assert decode("p", "42", None) == 42 and decode("p", '"x"', None) == "x"
    assert decode("p", "plain text", None) == "plain text"
    assert decode("p", "[1, 2]", "list") == [1, 2]
    assert type(decode("p", "[1, 2]", "list")[0]) is int
    assert decode("p", str(2**60), "int") == 2**60
    with pytest.raises(SystemExit, match="must be a JSON list"):
        decode("p", '{"a": 1}', "list")


def test_compiled_component_reads_an_optional_parameter_through_the_decoder(
    parameters_notebook, compile_nb
):
    source = compile_nb(parameters_notebook, trace=False).python_path.read_text(encoding="utf-8")
    assert 'seed: str = "null"' in source
    assert '_kale_ns["seed"] = _kale_json_parameter("seed", seed, None)' in source.replace("'", '"')
    assert '_kale_json_parameter("layers", layers, "list")' in source.replace("'", '"')
    assert '_kale_ns["rows"] = rows' in source.replace("'", '"')


@pytest.mark.parametrize(
    ("overrides", "samples", "words"),
    [
        ({"nope": 1}, {}, "unknown parameter"),
        ({}, {"nope": 1}, "unknown parameter"),
        ({"rows": parse_cli_value("abc")}, {}, "the str 'abc'"),
        ({"rows": parse_cli_value("1.5")}, {}, "the float 1.5"),
        ({"verbose": parse_cli_value("1")}, {}, "the int 1"),
        ({"layers": {"a": 1}}, {}, "the dict"),
        ({"offset": None}, {}, "the NoneType None"),
        ({}, {"ratio": "high"}, "--sample-params gives parameter 'ratio'"),
        ({"threshold": parse_cli_value("0.5")}, {"threshold": "x"}, "the str 'x'"),
    ],
)
def test_unknown_names_and_wrong_types_are_clear_errors(
    parameters_notebook, overrides, samples, words
):
    options = CompileOptions(overrides=overrides, samples=samples, trace=bool(samples))
    with pytest.raises(KaleTraceError) as raised:
        trace_notebook(parameters_notebook, options)  # samples only matter to a dry run
    assert words in raised.value.message
    assert raised.value.fix and raised.value.notebook == str(parameters_notebook)


def test_cli_reads_negative_numbers_and_none(parameters_notebook, tmp_path):
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(
        main,
        [
            "compile", str(parameters_notebook), "-o", str(out), "--no-trace",
            "-p", "offset", "-7", "-p", "ratio", "-0.5", "-p", "seed", "null",
            "-p", "threshold", "-2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    inputs = _root_inputs(next(out.glob("*.yaml")))
    assert inputs["offset"]["defaultValue"] == -7
    assert inputs["ratio"]["defaultValue"] == -0.5
    assert inputs["seed"] == {"defaultValue": "null", "isOptional": True, "parameterType": "STRING"}
    assert inputs["threshold"]["parameterType"] == "NUMBER_INTEGER"  # typed by -p


def test_cli_wrong_type_exits_1_with_the_fix(parameters_notebook, tmp_path):
    result = CliRunner().invoke(
        main,
        ["compile", str(parameters_notebook), "-o", str(tmp_path / "o"), "--no-trace",
         "-p", "verbose", "maybe"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "parameter 'verbose'" in result.output and "fix: pass a bool" in result.output


def test_a_none_parameter_reaches_the_step_as_none_or_as_the_value_passed(notebook, tmp_path):
    from kale_trace.runners.local import run_locally

    seen = tmp_path / "seen.txt"
    path = notebook(
        [
            ("pipeline-parameters", "seed = None\noffset = -3"),
            ("step:use", f"open({str(seen)!r}, 'a').write(repr((seed, offset)) + '\\n')"),
        ]
    )
    flow = trace_notebook(
        path, CompileOptions(overrides={"offset": parse_cli_value("-7")}, samples={})
    )
    seen.unlink()  # the dry run wrote it too
    assert run_locally(flow, tmp_path / "runs").succeeded
    assert run_locally(flow, tmp_path / "runs", arguments={"seed": "42"}).succeeded
    assert seen.read_text().splitlines() == ["(None, -7)", "(42, -7)"]
