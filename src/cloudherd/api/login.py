"""Which server the faces speak to, if any: ``CLOUDHERD_SERVER`` (with ``CLOUDHERD_TOKEN``), else what
``cloudherd login`` saved.  Kept apart from the server's client so that a command over the local state decides
so without importing an HTTP library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudherd.errors import UsageError
from cloudherd.settings import current

SERVER_ENV, TOKEN_ENV = "CLOUDHERD_SERVER", "CLOUDHERD_TOKEN"


def login_file() -> Path:
    from cloudherd.paths import data_dir

    return data_dir() / "server.json"


def refuse_remote(command: str) -> None:
    """Refuse, with the remedy, a command that needs the machine the state is on, when a server is configured."""
    if configured() is not None:
        raise UsageError(f"`{command}` runs where the state is, not through a server: unset {SERVER_ENV} (or "
                         "`cloudherd logout`) and run it on the server's machine")


def configured() -> tuple[str, str] | None:
    """(server URL, token) from the environment, else from ``cloudherd login``; None: use the local state."""
    settings = current()
    url = settings.server
    if url:
        token = (settings.token or "") or _saved().get("token") or ""
        return url.rstrip("/"), token
    saved = _saved()
    return (str(saved["server"]).rstrip("/"), str(saved.get("token") or "")) if saved.get("server") else None


def _saved() -> dict[str, Any]:
    try:
        return dict(json.loads(login_file().read_text()))
    except (OSError, ValueError):
        return {}


def save_login(url: str, token: str) -> Path:
    from cloudherd.paths import create_private

    path = login_file()
    create_private(path)
    path.write_text(json.dumps({"server": url.rstrip("/"), "token": token}))
    return path
