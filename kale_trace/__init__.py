"""kale-trace: compile a tagged Jupyter notebook into a Kubeflow Pipelines v2 pipeline.

The dataflow between steps comes from running the notebook once (a dry run in a real
kernel), not from guessing with static analysis alone.
"""

__version__ = "0.1.0"
