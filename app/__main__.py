"""`python -m app` is the same as the `headlens` command."""

from app.cli import main

main()
