"""Speed figures measured against baselines in the same run (`python -m benchmarks`)."""
