"""`python -m drkit` runs the CLI."""

from drkit.cli import run_main

run_main()
