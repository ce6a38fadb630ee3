"""The command line: a thin Typer + Rich face over :mod:`cloudherd.api`."""
