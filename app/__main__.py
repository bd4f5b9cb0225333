"""`python -m app` is the same as the `headlens` command."""

from app.cli import main

if __name__ == "__main__":  # not when a fresh process (app/fresh.py) imports it
    main()
