"""Turning a group's scripts into commands: Jinja2 rendering and the shell line that runs each one."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import jinja2

from cloudherd.errors import DeployError

# Scripts go to the node's work folder: the local provider sets CLOUDHERD_WORK, clouds use ~/.cloudherd/work.
WORKDIR = '"${CLOUDHERD_WORK:-$HOME/.cloudherd/work}"'

_env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render(source: str, content: str, context: Mapping[str, Any]) -> str:
    """The script with its template filled in; a template problem names the file and line."""
    try:
        return _env.from_string(content).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise DeployError(f"{source}:{exc.lineno}: template error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise DeployError(f"{source}: template error: {exc.message}") from None
    except Exception as exc:  # a filter or a call failed inside the template
        raise DeployError(f"{source}: template error: {exc}") from None


def script_command(name: str, env: Mapping[str, str]) -> str:
    """A shell line that stores the script read from stdin, then runs it in the work folder.

    Sending the script on stdin costs one round trip and needs no SFTP on the node.
    """
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "script"
    path = f'"$W/.cloudherd/scripts/{safe}"'
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items() if key.isidentifier())
    prefix = f"env {exports} " if exports else ""
    return (
        f'W={WORKDIR}; mkdir -p "$W/.cloudherd/scripts" && cat > {path} && chmod 700 {path} && cd "$W" && '
        f'if head -c2 {path} | grep -q "^#!"; then {prefix}{path}; else {prefix}sh {path}; fi'
    )


def in_workdir(command: str, env: Mapping[str, str] | None = None) -> str:
    """A user command run from the node's work folder (created when missing), with ``env`` exported."""
    exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items() if k.isidentifier())
    # cd first: a mkdir process on every command costs each node ~5 ms of CPU, and the folder is there
    return f'{exports}W={WORKDIR}; {{ cd "$W" 2>/dev/null || {{ mkdir -p "$W" && cd "$W"; }}; }} && {command}'
