"""What every cloud driver needs and must not write again: request checks, the cloud-init user data that
makes the login user, the HTTP-status fallback of error typing, a bounded gather, message hygiene.

Drivers keep only what is really theirs (which error *codes* of their cloud mean capacity or quota, how
their API is called); everything here behaves the same for every cloud, so it is written once.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from cloudherd.providers.base import (
    AuthError,
    CreateRequest,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    ThrottledError,
    TransientError,
)

T = TypeVar("T")
SSH_PORT = 22

# useradd's portable names (cloud-init and GCE's guest agent refuse others); GCE's agent also takes dots
LOGIN_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def import_sdk(module: str, provider: str, package: str) -> Any:
    """The SDK module a driver needs, imported when the driver is made (so that cloudherd imports and the
    local provider works without it); a missing one is a one-line error naming the extra to install."""
    import importlib

    from cloudherd.providers.base import MissingDependencyError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the {provider} provider needs {package}: pip install 'cloudherd[{provider}]'") from exc


def check_request(request: CreateRequest, where: str) -> bool:
    """The checks every ``create`` starts with; False when there is nothing to make (``count`` 0)."""
    if request.count < 0:
        raise InvalidRequestError(f"{where}: count must be ≥ 0")
    if request.names and len(request.names) != request.count:
        raise InvalidRequestError(f"{where}: {len(request.names)} names given for {request.count} instances")
    return request.count > 0


def check_ports(ports: Iterable[int], where: str) -> list[int]:
    """``ports`` as a sorted list without repeats; anything but a TCP port number is an InvalidRequestError."""
    checked: set[int] = set()
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidRequestError(f"{where}: port {port!r} is not a TCP port (1-65535)")
        checked.add(port)
    return sorted(checked)


def check_login_name(user: str, where: str, pattern: re.Pattern[str] = LOGIN_NAME) -> str:
    """``user`` when it can be made on a cloud image (``root`` always can); else an InvalidRequestError."""
    if user != "root" and not pattern.match(user):
        raise InvalidRequestError(f"{where}: '{user}' is not a valid login user name")
    return user


def cloud_config(user: str, public_key: str, where: str) -> str:
    """cloud-init user data that makes ``user`` with the key and password-less sudo (JSON is valid YAML).

    Why: every image has its own default user (``ubuntu``, ``admin``, ``ec2-user``…); asking cloud-init for
    ours makes the spec's ``ssh.user`` work on all of them."""
    key = public_key.strip()
    check_login_name(user, where)
    if user == "root":
        config: dict[str, Any] = {"disable_root": False, "users": [{"name": "root", "ssh_authorized_keys": [key]}]}
    else:
        config = {"users": ["default", {"name": user, "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash",
                                        "ssh_authorized_keys": [key]}]}
    return "#cloud-config\n" + json.dumps(config, indent=1) + "\n"


def boot_data(request: CreateRequest, where: str, *, login: bool, scripts: Sequence[str] = ()) -> str:
    """First-boot user data: the request's own (a node's cloud-config, rendered) and, with ``login``, the
    cloud-config that makes the login user (:func:`cloud_config`) — merged into one cloud-config (the login
    user added to the node's ``users``), or, for other user data (a shell script), a MIME multi-part that
    cloud-init runs part by part; ``scripts``: the driver's own boot scripts, parts after those."""
    parts = _boot_parts(request, where, login=login) + [("x-shellscript", script) for script in scripts]
    if not parts:
        return ""
    return parts[0][1] if len(parts) == 1 else _multipart(parts)


def _boot_parts(request: CreateRequest, where: str, *, login: bool) -> list[tuple[str, str]]:
    ours = cloud_config(request.ssh_user, request.ssh_public_key, where) if login else None
    theirs = request.user_data
    if not theirs:
        return [("cloud-config", ours)] if ours else []
    kind = "cloud-config" if theirs.lstrip().startswith("#cloud-config") else "x-shellscript"
    if ours is None:
        return [(kind, theirs)]
    if kind != "cloud-config":
        return [("cloud-config", ours), ("x-shellscript", theirs)]
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    try:
        config = yaml.load(theirs) or {}
    except YAMLError as exc:
        raise InvalidRequestError(f"{where}: the node's cloud-config is not YAML once rendered: "
                                  f"{str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise InvalidRequestError(f"{where}: the node's cloud-config is not a mapping once rendered")
    login_config = json.loads(ours.partition("\n")[2])
    users = list(config.get("users") or ["default"])
    users += [u for u in login_config["users"] if u != "default" or "default" not in users]
    config["users"] = users
    if "disable_root" in login_config:
        config["disable_root"] = login_config["disable_root"]
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(config, stream)
    return [("cloud-config", "#cloud-config\n" + stream.getvalue())]


def _multipart(parts: list[tuple[str, str]]) -> str:
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    message = MIMEMultipart()
    for subtype, text in parts:
        message.attach(MIMEText(text, subtype, "utf-8"))
    return message.as_string()


def error_from_status(text: str, status: int, code: str | None = None) -> ProviderError:
    """The typed error of an HTTP status, for what a driver's own codes did not decide.

    401/403 → AuthError, 404 → NotFoundError, 408 → TransientError, 429 → ThrottledError, other 4xx →
    InvalidRequestError, 5xx and no status at all (a dropped connection) → TransientError."""
    if status in (401, 403, 407):
        return AuthError(text, code=code, status=status)
    if status == 404:
        return NotFoundError(text, code=code, status=status)
    if status == 408:
        return TransientError(text, code=code, status=status)
    if status == 429:
        return ThrottledError(text, code=code, status=status)
    if 400 <= status < 500:
        return InvalidRequestError(text, code=code, status=status)
    if status >= 500 or status == 0:
        return TransientError(text, code=code, status=status)
    return ProviderError(text, code=code, status=status)


async def gather_all(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the calls, at most ``limit`` at a time, all to the end; then raise the first error, if any.

    Why all to the end: a fan-out (delete 50 instances) must not leave half its calls running unobserved
    when one fails; the caller learns of the first failure once every call has settled."""
    slots = asyncio.Semaphore(max(1, limit))

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with slots:
            return await call()

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_url(url: str) -> str:
    """The URL without any user:password part (for messages)."""
    try:
        parts = urlsplit(url)
        netloc = f"{parts.hostname or ''}:{parts.port}" if parts.port else (parts.hostname or "")
    except ValueError:
        return "(unparsable endpoint)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
