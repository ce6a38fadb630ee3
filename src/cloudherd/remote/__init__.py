"""Remote work over SSH (asyncssh): keys, connections, running scripts and commands."""

from cloudherd.remote.keys import ensure_keypair
from cloudherd.remote.ssh import RunResult, Target, UnreachableError, connect, run

__all__ = ["RunResult", "Target", "UnreachableError", "connect", "ensure_keypair", "run"]
