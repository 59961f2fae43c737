"""kale-trace: compile a tagged Jupyter notebook into a Kubeflow Pipelines v2 pipeline.

The dataflow between steps comes from running the notebook once (a dry run in a real
kernel), not from guessing with static analysis alone.
"""

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where `jupyter labextension develop` finds the built JupyterLab extension."""
    return [{"src": "labextension", "dest": "kale-trace"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server extension (REST handlers for the lab extension) is `kale_trace.lab`."""
    return [{"module": "kale_trace.lab"}]
