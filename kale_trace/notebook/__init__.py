"""The notebook model: cells, Kale tags, metadata and the step DAG."""
