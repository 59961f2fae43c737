"""Files as dataflow: a file one step writes under the notebook's folder and a later step
reads is data crossing a step, and travels as an artifact (PATTERNS 19)."""

from __future__ import annotations

import ast

from kale_trace.cellcode import plain_python_lenient
from kale_trace.executor.dryrun import PARAMETERS, PROLOGUE, DryRun
from kale_trace.marshal import FILE
from kale_trace.notebook.model import Cell
from kale_trace.tracer.flows import Flow, StepFlow


def file_flows(run: DryRun, steps: dict[str, StepFlow], warnings: list[dict[str, str]]) -> None:
    """Files a step writes under the notebook's folder and a later step reads.

    A read is an `open` the dry run saw, or the path spelled out as a string in the step's
    code (native readers such as pyarrow's do not go through `open`).
    """
    last_writer: dict[str, tuple[str, int]] = {}  # path -> (step, size in bytes)
    external: set[str] = set()
    for segment in run.segments:
        probe = segment.probe
        written_here = set(probe.get("files_written", []))
        reads = set(probe.get("files_read", [])) - last_writer.keys() - written_here - external
        for path in sorted(reads):
            external.add(path)
            who = (
                f"step '{segment.step}'"
                if segment.step not in (PROLOGUE, PARAMETERS)
                else ("the imports and functions cells")
            )
            warnings.append(
                {
                    "step": segment.step,
                    "variable": path,
                    "message": f"{who} reads '{path}' from the notebook's folder; local runs "
                    "see it, but on a cluster it must be in the step's image or a mounted volume",
                }
            )
        if segment.step not in (PROLOGUE, PARAMETERS) and last_writer:
            consumer = steps[segment.step]
            mentioned = _string_constants(segment.cells)
            read = set(probe.get("files_read", []))
            read |= {path for path in last_writer if _mentions(path, mentioned)}
            for path in sorted(read):
                writer = last_writer.get(path)
                if writer is None or writer[0] in (segment.step, PROLOGUE, PARAMETERS):
                    continue
                if any(f.variable == path and f.marshaller == FILE.name for f in consumer.inputs):
                    continue
                info = {"type": FILE.name, "mro": [], "kind": "file", "size_bytes": writer[1]}
                flow = Flow(path, writer[0], consumer.name, info, FILE.name, "trace")
                consumer.inputs.append(flow)
                warnings.append(
                    {
                        "step": consumer.name,
                        "variable": path,
                        "message": f"step '{consumer.name}' reads the file '{path}' that step "
                        f"'{writer[0]}' wrote; pipeline steps run in separate containers, so "
                        "kale-trace passes the file between them as an artifact",
                    }
                )
        sizes = probe.get("files_sizes", {})
        for path in probe.get("files_written", []):
            last_writer[path] = (segment.step, int(sizes.get(path, 0)))


def _string_constants(cells: list[Cell]) -> set[str]:
    found: set[str] = set()
    for cell in cells:
        try:
            tree = ast.parse(plain_python_lenient(cell.source))
        except SyntaxError:
            continue
        found |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
    return found


def _mentions(path: str, constants: set[str]) -> bool:
    for text in constants:
        cleaned = text[2:] if text.startswith("./") else text
        if cleaned == path or (cleaned.endswith("/" + path) and "/" not in path):
            return True
    return False


def restored_files(
    run: DryRun, notes: list[dict[str, str]], warnings: list[dict[str, str]]
) -> None:
    """Say which of the user's files the dry run changed: put back, or not (native writers)."""
    if run.files_restored:
        shown = ", ".join(run.files_restored[:10])
        notes.append(
            {
                "step": "",
                "variable": "",
                "message": f"the dry run changed {len(run.files_restored)} file(s) of the "
                f"notebook's folder ({shown}); kale-trace put them back as they were",
            }
        )
    for path in run.files_changed:
        warnings.append(
            {
                "step": "",
                "variable": path,
                "message": f"the dry run changed '{path}' in the notebook's folder through a "
                "writer kale-trace could not intercept (native code), so it is not as it was: "
                "restore it from a copy before running the pipeline",
            }
        )
