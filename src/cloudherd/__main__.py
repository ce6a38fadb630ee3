"""``python -m cloudherd`` is the ``cloudherd`` command."""

from cloudherd.cli.app import run

run()
