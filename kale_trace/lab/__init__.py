"""The Jupyter server extension of kale-trace's JupyterLab extension (the `lab` extra).

Enabled by `etc/jupyter/jupyter_server_config.d/kale_trace.json`, which the package
installs; `jupyter server extension list` shows it.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "kale_trace.lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Add the /kale-trace/ handlers; stop every running job when the server stops."""
    from kale_trace.lab.handlers import setup_handlers

    manager = setup_handlers(server_app.web_app, Path(server_app.root_dir))
    atexit.register(manager.shutdown)
    server_app.log.info("kale-trace: /kale-trace/ handlers loaded")
