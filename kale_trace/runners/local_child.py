"""Child process of a local run: imports the local pipeline module and runs it with kfp.local.

A separate process keeps kfp.local's logging changes out of the CLI, runs in the notebook's
folder (relative paths work as in the notebook) and can be interrupted cleanly.

Usage: python -m kale_trace.runners.local_child MODULE.py PIPELINE_ROOT WORKSPACE ARGS.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    module_path, pipeline_root, workspace, arguments = argv
    from kfp import local

    from kale_trace.codegen.kfp_compile import load_pipeline_module

    _, pipeline = load_pipeline_module(Path(module_path))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=pipeline_root,
        workspace_root=workspace,
        raise_on_error=True,
    )
    try:
        pipeline(**json.loads(Path(arguments).read_text(encoding="utf-8")))
    except RuntimeError:
        return 1  # kfp.local already logged which task failed; the parent reports it
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
