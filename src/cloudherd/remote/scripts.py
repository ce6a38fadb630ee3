"""Turning a group's scripts into commands: Jinja2 rendering and the shell line that runs each one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cloudherd.errors import DeployError
from cloudherd.remote.envelope import LOAD, READ, RemoteCommand, exportable

# Scripts go to the node's work folder: the local provider sets CLOUDHERD_WORK, clouds use ~/.cloudherd/work.
WORKDIR = '"${CLOUDHERD_WORK:-$HOME/.cloudherd/work}"'

# Scripts are written by users, and behind `serve` by anyone holding a token: the template reaches only
# the context it is given (no attribute starting with '_', no call that changes a value), so that
# ``{{ cycler.__init__.__globals__.os.system(…) }}`` is a template error, not code run on the server.
_env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     autoescape=False)
# Python's pure builtins, which Mako templates (OGC's scripts, translated) call as Python code does
_env.globals.update({f.__name__: f for f in (len, str, int, float, bool, list, tuple, sorted, enumerate, min,
                                              max, sum, abs, round, any, all, zip, reversed)})


def render(source: str, content: str, context: Mapping[str, Any]) -> str:
    """The script with its template filled in; a template problem names the file and line."""
    try:
        return _env.from_string(content).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise DeployError(f"{source}:{exc.lineno}: template error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise DeployError(f"{_where(source, exc)}: template error: {exc.message}") from None
    except Exception as exc:  # a filter or a call failed inside the template
        raise DeployError(f"{_where(source, exc)}: template error: {exc}") from None


def _where(source: str, exc: BaseException) -> str:
    """``source:LINE`` of a failure at render time: Jinja maps the template's frames to its own lines."""
    import traceback

    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<template>"]
    return f"{source}:{lines[-1]}" if lines and lines[-1] else source


def script_command(name: str, env: Mapping[str, str]) -> RemoteCommand:
    """A shell line that stores the script read from stdin, then runs it in the work folder with ``env``.

    Sending the script on stdin costs one round trip and needs no SFTP on the node.  ``env`` travels
    on stdin too, on the line before the script (see :mod:`cloudherd.remote.envelope`): the command
    line, which any user of the node can read while the script runs, holds no value.  The stored
    script is made private (0700) while still empty, so its text is never readable by others.
    """
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "script"
    path = f'"$W/.cloudherd/scripts/{safe}"'
    line = (
        f'{READ}; W={WORKDIR}; mkdir -p "$W/.cloudherd/scripts" && : > {path} && chmod 700 {path} && '
        f'cat > {path} && cd "$W" && '
        f'if head -c2 {path} | grep -q "^#!"; then set -- {path}; else set -- sh {path}; fi && {LOAD} && "$@"'
    )
    command = RemoteCommand(line, exportable(env))
    command.step, command.script = "script", name
    return command


def in_workdir(command: str, env: Mapping[str, str] | None = None) -> RemoteCommand:
    """A user command run from the node's work folder (created when missing), with ``env`` exported.

    ``env`` is sent as the first line of stdin and read by the shell itself, so it never appears on
    the node's command lines; the command's own stdin is what follows (today: nothing, as before).
    """
    # cd first: a mkdir process on every command costs each node ~5 ms of CPU, and the folder is there
    line = f'{READ}; {LOAD}; W={WORKDIR}; {{ cd "$W" 2>/dev/null || {{ mkdir -p "$W" && cd "$W"; }}; }} && {command}'
    return RemoteCommand(line, exportable(env))
