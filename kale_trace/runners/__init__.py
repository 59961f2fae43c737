"""Where a compiled pipeline runs: KFP's local runner, or a Kubeflow cluster."""
