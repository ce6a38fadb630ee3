"""``python -m cloudherd`` is the ``cloudherd`` command."""

from cloudherd.cli.main import run

run()
