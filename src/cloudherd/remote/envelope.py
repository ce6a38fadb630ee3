"""Handing a command its environment over the SSH channel's stdin, never on its command line.

Anything on a command line is world-readable on the node while the command runs (``ps``,
``/proc/PID/cmdline``), so secrets from a group's ``env`` must not be there.  Nor is SSH's own
``env`` request an option: sshd refuses it unless ``AcceptEnv`` names each variable.

How it travels: the remote shell line starts by reading ONE line from stdin with the shell's own
``read`` builtin (which reads a pipe byte by byte, so it never takes more than that line), and later
evaluates it; the line holds ``export K='v' ...`` words made here with :func:`shlex.quote`.  Whatever
follows on stdin (a script's text, or the input of an ``exec`` command) is left untouched for the
command.  The values exist only in the shell's memory and in its children's environments (readable by
the same user only, like any environment); no file holds them, so none can be left behind, and it
costs no extra round trip, channel or process.

A :class:`RemoteCommand` is the shell line with its environment attached; :func:`cloudherd.remote.ssh.run`
puts the environment line in front of the input.  The line is tagged, so a command that lost its
environment on the way (turned into a plain ``str``) fails with exit 97 instead of taking the first
line of its input for an environment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

TAG = "cloudherd-env:1"
MISSING_EXIT = 97
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VAR = "CLOUDHERD_ENV_LINE"  # a shell variable of the remote shell only: never exported

# The first step of a remote line: take the environment line off stdin (nothing more).
READ = f"IFS= read -r {_VAR} || {_VAR}="
# Later (where the command's environment should start): check the tag, then export what it says.
LOAD = (
    f'case "${_VAR}" in "{TAG} "*|"{TAG}") eval "${{{_VAR}#{TAG}}}" ;; '
    f"*) echo 'cloudherd: the environment did not arrive on stdin' >&2; exit {MISSING_EXIT} ;; esac; "
    f"unset {_VAR}"
)


class RemoteCommand(str):
    """A shell line (starting with :data:`READ`) and the environment to send before its input."""

    env: dict[str, str]
    step = "command"  # what it is, for its span (ssh.command, ssh.script)
    script: str | None = None  # the script's name, for a step "script"

    def __new__(cls, line: str, env: Mapping[str, str] | None = None) -> RemoteCommand:
        command = super().__new__(cls, line)
        command.env = dict(env or {})
        return command

    def stdin_prefix(self) -> str:
        return env_line(self.env)


def exportable(env: Mapping[str, str] | None) -> dict[str, str]:
    """The variables a POSIX shell can export (others were never passed on, and still are not)."""
    return {k: v for k, v in (env or {}).items() if _NAME.match(k) and "\0" not in v}


def env_line(env: Mapping[str, str]) -> str:
    """The tagged line, ending in a newline, that :data:`LOAD` evaluates: ``export`` of every variable.

    A value's newlines are spelled as ``"$nl"`` (the line must stay one line); ``nl`` is then made once
    by the remote shell and unset again.
    """
    values = exportable(env)
    words = []
    multiline = False
    for key, value in values.items():
        if "\n" in value:
            multiline = True
            quoted = '"$CLOUDHERD_NL"'.join(shlex.quote(part) for part in value.split("\n"))
        else:
            quoted = shlex.quote(value)
        words.append(f"{key}={quoted}")
    body = f"export {' '.join(words)}" if words else ":"
    if multiline:
        body = f"CLOUDHERD_NL=$(printf '\\n_'); CLOUDHERD_NL=${{CLOUDHERD_NL%_}}; {body}; unset CLOUDHERD_NL"
    return f"{TAG} {body}\n"


def stdin_for(command: str, input: str | None) -> str:
    """What goes on the channel's stdin for ``command``: its environment line (if it has one), then ``input``."""
    prefix = command.stdin_prefix() if isinstance(command, RemoteCommand) else ""
    return prefix + (input or "")
