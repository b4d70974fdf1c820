"""`python -m ragjet …` is the `ragjet` command (for interpreters run by path, e.g. under an emulator)."""

from ragjet.cli import main

main()
