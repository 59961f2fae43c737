"""What each step really does: kernel-side probes, static facts, and the merged dataflow."""
