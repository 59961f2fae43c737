"""`python -m kale_trace` is the `kale-trace` command."""

from kale_trace.cli import main

main()
