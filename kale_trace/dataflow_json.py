"""`dataflow.json`: the dataflow as the stable contract for tools and reviewers (DESIGN §6)."""

from __future__ import annotations

import json
from typing import Any

from kale_trace.tracer.dataflow import Dataflow, Flow

_DETAIL_KEYS = ("shape", "dtype", "columns", "size_bytes", "saved_bytes")


def _value(flow: Flow) -> dict[str, Any]:
    info = flow.info
    entry: dict[str, Any] = {"name": flow.variable, "type": info.get("type", "unknown")}
    entry["marshaller"] = flow.marshaller
    for key in _DETAIL_KEYS:
        if key in info:
            entry[key] = info[key]
    entry["source"] = flow.source
    return entry


def _input(flow: Flow) -> dict[str, Any]:
    entry = {**_value(flow), "from": flow.producer}
    if flow.alias_of:
        entry["alias_of"] = flow.alias_of  # the same object: re-bound in the step, not passed
    return entry


def to_dict(flow: Dataflow) -> dict[str, Any]:
    """A JSON-ready dict; key order is fixed so the file is byte-identical across runs."""
    return {
        "pipeline": flow.pipeline,
        "notebook": flow.notebook.path.name,
        "traced": flow.traced,
        "parameters": [
            {"name": p.name, "type": p.type, "default": p.default, "sample": p.sample}
            for p in flow.parameters
        ],
        "steps": [
            {
                "name": step.name,
                "display_name": step.display_name,
                "cells": [c.index for c in step.cells],
                "after": step.after,
                "parameters": step.parameters,
                "inputs": [_input(f) for f in step.inputs],
                "outputs": [_value(f) for f in step.outputs],
                "imports": [step.imports[k] for k in sorted(step.imports)],
                "definitions": sorted(step.definitions),
                "metrics": step.metrics,
                "settings": step.settings,
                "dry_run_seconds": round(step.seconds, 3),
                "peak_rss_bytes": step.peak_rss_bytes,
            }
            for step in flow.steps
        ],
        "warnings": flow.warnings,
        "notes": [
            {"cell": n.cell, "message": n.message, "warning": n.warning}
            for n in flow.notebook.notes
        ],
    }


def dumps(flow: Dataflow, *, timings: bool = True) -> str:
    data = to_dict(flow)
    if not timings:  # timings differ run to run; determinism checks drop them
        for step in data["steps"]:
            step.pop("dry_run_seconds")
            step.pop("peak_rss_bytes")
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
