"""`python -m collect` is the `collect` command."""

from collect.cli import main

main()
