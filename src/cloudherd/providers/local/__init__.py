"""The ``local`` provider: real SSH machines on this computer, the embedded default.

Each node is a folder (``<root>/<id>/``) with its own host key, authorized_keys, home and work
folder, served by its own SSH server on its own loopback address (127.x.y.z): OpenSSH's ``sshd``
where one is installed, otherwise cloudherd's built-in asyncssh server
(:mod:`cloudherd.providers.local.local_server`).  Servers run in their own session so they outlive the
CLI; a fresh provider finds them again from ``node.json``.  ``HOME`` is the node's home, so the login
user's shell start-up files are not read (they can make each command ~30x slower).
As root, port 22 is used and each node gets its own host name (a UTS namespace) where possible.

A node's processes are found again by pid, each checked to still be what it was: the supervisor by its
command line (it names the node's folder), the SSH server by the identity recorded when it started
(``server_identity`` in ``node.json``: pid, start time, boot) — sshd's process title overwrites its
environment (the node marker) and may cut its command line short, and a pid alone can be reused.

The package, by concern: :mod:`.driver` (the provider interface), :mod:`.nodes` (a node made, launched, ended),
:mod:`.launch` (its SSH server's start), :mod:`.processes` / :mod:`.proc` (its processes, found again and
stopped), :mod:`.faults` (faults on demand), :mod:`.meta` (its record); and what a node runs in:
:mod:`.sandbox` (namespaces, overlay root, cgroups), :mod:`.net` (a network of its own, as root), :mod:`.slirp`
(rootless), :mod:`.local_server` (cloudherd's own SSH server), the scripts :mod:`.node_setup` and :mod:`.idmap`.
"""

from cloudherd.providers.base import FAULTS
from cloudherd.providers.local.driver import LocalProvider
from cloudherd.providers.local.meta import NODE_MARKER, SIZES

__all__ = ["FAULTS", "NODE_MARKER", "SIZES", "LocalProvider"]
