"""The dry run: execute the pipeline's cells once, in a real kernel, and probe each step."""
