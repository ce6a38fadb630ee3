"""``cloudherd serve --config server.yml``: the clouds the server offers, in the spec's own ``providers:``
format, and a few knobs.  Without a file the server offers ``local`` alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cloudherd.errors import UsageError
from cloudherd.inputs import GROUP_SIZE_LIMIT
from cloudherd.spec.durations import DurationError, positive_seconds

KNOWN_KEYS = {"providers", "interval", "ssh_idle_timeout", "max_group_size", "metrics_listen"}
DEFAULT_MAX_GROUP_SIZE = 1000


@dataclass(frozen=True)
class ServerConfig:
    providers: dict[str, dict[str, Any]] = field(default_factory=lambda: {"local": {"type": "local"}})
    interval: float = 5.0  # seconds between the manager's passes
    ssh_idle_timeout: float = 300.0  # a warm SSH connection unused this long is closed
    # the most machines one group may be asked for, by any face (its count, min, max or desired size)
    max_group_size: int = DEFAULT_MAX_GROUP_SIZE
    # HOST:PORT of a /metrics listener of its own, without a token (None: /metrics on the API only, with one)
    metrics_listen: str | None = None


def load_config(path: Path | None) -> ServerConfig:
    """The file read and checked; every mistake is one line naming the file and the key."""
    if path is None:
        return ServerConfig()
    from cloudherd.spec.model import ProviderConfig
    from cloudherd.spec.yamlsafe import parse_yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a server configuration is a mapping with a 'providers:' key")
    unknown = sorted(set(map(str, data)) - KNOWN_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(KNOWN_KEYS))})")
    providers = data.get("providers")
    if not isinstance(providers, dict) or not providers:
        raise UsageError(f"{path}: 'providers:' must name at least one cloud, e.g. {{here: {{type: local}}}}")
    checked: dict[str, dict[str, Any]] = {}
    for name, settings in providers.items():
        if not isinstance(settings, dict):
            raise UsageError(f"{path}: providers.{name} must be a mapping with a 'type:'")
        try:
            ProviderConfig.model_validate(dict(settings))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UsageError(f"{path}: providers.{name}{'.' + where if where else ''}: {first['msg']}") from None
        checked[str(name)] = {str(k): v for k, v in settings.items()}
    return ServerConfig(providers=checked, interval=_seconds(data, "interval", 5.0, path),
                        ssh_idle_timeout=_seconds(data, "ssh_idle_timeout", 300.0, path),
                        max_group_size=_group_size(data, path), metrics_listen=_metrics_listen(data, path))


def _seconds(data: dict[str, Any], key: str, default: float, path: Path) -> float:
    try:
        return positive_seconds(data.get(key, default), key)
    except DurationError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _group_size(data: dict[str, Any], path: Path) -> int:
    value = data.get("max_group_size", DEFAULT_MAX_GROUP_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= GROUP_SIZE_LIMIT:
        raise UsageError(f"{path}: max_group_size must be a whole number of machines from 1 to {GROUP_SIZE_LIMIT} "
                         f"(the most one group may have)")
    return value


def _metrics_listen(data: dict[str, Any], path: Path) -> str | None:
    from cloudherd.api.metrics_view import listen_address

    value = data.get("metrics_listen")
    if value is None:
        return None
    try:
        listen_address(str(value))
    except UsageError as exc:
        raise UsageError(f"{path}: metrics_listen: {exc}") from None
    return str(value)
