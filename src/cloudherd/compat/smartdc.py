"""py-smartdc's names and keywords over cloudherd: ``from cloudherd.compat.smartdc import DataCenter, DEBUG_CONFIG``.

Why a face of its own: code written for py-smartdc (Joyent's CloudAPI) should run with its import line and its
data center's name changed, and nothing else.  :class:`cloudherd.api.DataCenter` speaks cloudherd's words
(``size=``, ``image=``, a provider type); this module takes py-smartdc's (``location=``, ``key_id=``,
``secret=``, ``config=``, ``package=``, ``dataset=``, dicts for packages and datasets, ``status()``, the
``provisioning`` / ``deleted`` states) and hands everything to it.  It is thin on purpose: what a machine is,
how it is made and waited on, is the API's.

Every keyword is either mapped or refused, never kept unread:

* ``location`` — which data center: ``"local"`` (machines on this computer; the default), ``"aws:REGION"``,
  ``"gce:ZONE"``, ``"libcloud:DRIVER"``.  A Joyent name (``us-sw-1``) is refused: it has no driver.
* ``secret`` — the private key machines are made with and reached by (cloudherd's ``key=``); it must exist.
  Left out, cloudherd's own key.
* ``key_id`` — ``/<login>/keys/<name>``: kept; ``keys()`` names the key by it and ``login`` comes from it.
* ``config`` — ``DEBUG_CONFIG`` (``{"verbose": stderr}``) echoes each provider call to stderr (cloudherd's
  ``echo=``), as py-smartdc echoed each CloudAPI request; ``verbose=True`` does the same.
* ``headers``, ``known_locations``, ``allow_agent=True``, ``verify=False`` — refused: they configure an
  HTTP API cloudherd does not call.  Other keywords are the provider's settings (``budget=``…), checked there.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from cloudherd.api.datacenter import BootScriptError, check_regex
from cloudherd.api.datacenter import DataCenter as _ApiDataCenter
from cloudherd.api.machine import DEFAULT_TIMEOUT, SyncMachine
from cloudherd.api.types import Image, Size
from cloudherd.errors import UsageError

__all__ = ["DEBUG_CONFIG", "LOCATIONS", "DataCenter", "Machine"]

LOCATIONS = ("local", "aws:REGION", "gce:ZONE", "libcloud:DRIVER")
# the provider setting a location's part after the colon is
_LOCATION_SETTING = {"aws": "region", "gce": "zone", "libcloud": "driver"}

# py-smartdc's state words for cloudherd's (the others are the same word: running, stopped)
_TO_SMARTDC = {"pending": "provisioning", "terminated": "deleted", "dead": "failed"}
_FROM_SMARTDC = {word: state for state, word in _TO_SMARTDC.items()}

# DataCenter keywords of py-smartdc that configure its HTTP client, with why cloudherd refuses them
_HTTP_ONLY = {
    "headers": "cloudherd calls no CloudAPI: there are no request headers to set",
    "known_locations": "cloudherd's locations are 'local', 'aws:REGION', 'gce:ZONE', 'libcloud:DRIVER'",
    "allow_agent": "machines are reached with the key secret= names (cloudherd's key=), not an ssh-agent",
    "verify": "cloudherd calls no CloudAPI: there is no certificate to verify (the clouds' SDKs verify theirs)",
}


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (a test's capture, a redirected stream), not the one
    that was there when this module was imported."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def __repr__(self) -> str:
        return "<stderr>"


# py-smartdc's ``config=DEBUG_CONFIG``: echo each call to stderr
DEBUG_CONFIG: dict[str, Any] = {"verbose": _Stderr()}


class Machine(SyncMachine):
    """py-smartdc's ``Machine``: a :class:`~cloudherd.api.machine.SyncMachine` that speaks its state words.

    ``state`` and ``status()`` say ``provisioning`` / ``running`` / ``stopped`` / ``deleted`` / ``failed``;
    ``poll_until`` / ``poll_while`` take those words or cloudherd's, and ``interval`` as py-smartdc's second
    argument.  Every wait is still bounded (``timeout=``, PollTimeoutError): py-smartdc's could spin forever.
    """

    @property
    def state(self) -> str:
        return _TO_SMARTDC.get(self.machine.state, self.machine.state)

    @property
    def ips(self) -> list[str]:
        """Every address of the machine, public first (py-smartdc's ``ips``)."""
        return list(dict.fromkeys([*self.public_ips, *self.private_ips]))

    def status(self) -> str:
        """Read the machine again and return its state, in py-smartdc's words."""
        state = super().status()
        return _TO_SMARTDC.get(state, state)

    def poll_until(self, state: str, interval: float = 2, *,  # type: ignore[override]
                   timeout: float = DEFAULT_TIMEOUT) -> Machine:
        super().poll_until(_FROM_SMARTDC.get(state, state), timeout=timeout, interval=interval)
        return self

    def poll_while(self, state: str, interval: float = 2, *,  # type: ignore[override]
                   timeout: float = DEFAULT_TIMEOUT) -> Machine:
        super().poll_while(_FROM_SMARTDC.get(state, state), timeout=timeout, interval=interval)
        return self

    def __repr__(self) -> str:
        return f"<cloudherd.compat.smartdc.Machine: {self.name} <{self.id}> in {self.provider.name}>"


class DataCenter:
    """py-smartdc's ``DataCenter``: ``DataCenter(location='local', key_id=..., secret=..., config=DEBUG_CONFIG)``.

    Packages and datasets are dicts, as CloudAPI's are (``name``/``memory``/``vcpus``/``default``;
    ``id``/``urn``/``name``), and any method taking one takes the dict, the name or id, or cloudherd's
    :class:`Size` / :class:`Image`.  ``api`` is the :class:`cloudherd.api.DataCenter` underneath.
    """

    def __init__(self, location: str | None = None, key_id: str | None = None, secret: str | None = None,
                 headers: Mapping[str, str] | None = None, login: str | None = None,
                 config: Mapping[str, Any] | None = None, known_locations: Mapping[str, str] | None = None,
                 allow_agent: bool = False, verify: bool = True, verbose: bool | None = None, *,
                 key: str | Path | None = None, user: str | None = None, **settings: Any) -> None:
        given = {"headers": headers is not None, "known_locations": known_locations is not None,
                 "allow_agent": allow_agent is not False, "verify": verify is not True}
        for keyword, used in given.items():
            if used:
                raise UsageError(f"DataCenter: keyword '{keyword}' has no meaning here: {_HTTP_ONLY[keyword]}")
        if key is not None and secret is not None:
            raise UsageError("DataCenter: secret= and key= both name the private key: give one")
        self.location = location or "local"
        self.key_id = key_id
        self.login = login or _login_of(key_id)
        self.secret = secret
        self.config = dict(config or {})
        echo = _echo_stream(self.config, verbose)
        self._settings = dict(settings)
        kind, own = parse_location(self.location)
        self._key = _private_key(secret) if secret is not None else key
        self.api = _ApiDataCenter(kind, key=self._key, user=user, echo=echo, **own, **settings)

    def __repr__(self) -> str:
        who = f"{self.login}@" if self.login else ""
        return f"<cloudherd.compat.smartdc.DataCenter: {who}{self.location}>"

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> DataCenter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- account --------------------------------------------------------------------------------------

    def keys(self) -> list[dict[str, str]]:
        """The public keys machines here trust, as CloudAPI listed an account's: name, fingerprint, key.

        The name is ``key_id``'s (``/<login>/keys/<name>``) when one was given: the label py-smartdc's user
        knows the key by."""
        found = self.api.keys()
        if self.key_id:
            name = self.key_id.rstrip("/").rsplit("/", 1)[-1]
            found = [{**k, "name": name} for k in found]
        return found

    def datacenter(self, name: str) -> DataCenter:
        """Another data center with this one's credentials and preferences: the same key (``secret``),
        ``key_id``, ``login``, echo, login user; this one's provider settings when it is the same provider."""
        kind, _ = parse_location(name)
        same = kind == parse_location(self.location)[0]
        return DataCenter(name, key_id=self.key_id, secret=self.secret, login=self.login, config=self.config,
                          key=None if self.secret is not None else self._key, user=self.api.aio.user,
                          **(self._settings if same else {}))

    # -- packages and datasets ----------------------------------------------------------------------

    def packages(self, search: str | None = None, memory: int | None = None,
                 vcpus: float | None = None) -> list[dict[str, Any]]:
        """Machine sizes as CloudAPI packages; ``search`` a regular expression on the name, ``memory`` (MiB)
        and ``vcpus`` exact filters."""
        return [_package(s) for s in self.api.sizes(search)
                if (memory is None or s.memory_mb == memory) and (vcpus is None or s.cpus == vcpus)]

    def package(self, name: str | Mapping[str, Any] | Size) -> dict[str, Any]:
        """One package by its name (py-smartdc's ``Small 1GB`` finds size ``small`` of 1024 MiB)."""
        return _package(self._size(name))

    def default_package(self) -> dict[str, Any] | None:
        """The package machines get when none is asked for."""
        size = self.api.default_size()
        return _package(size) if size else None

    def datasets(self, search: str | None = None) -> list[dict[str, Any]]:
        """Images as CloudAPI datasets; ``search`` a regular expression searched in the id and the name."""
        check_regex(search)
        found = self.api.images()
        if search is not None:
            found = [i for i in found if re.search(search, i.id, re.I) or re.search(search, i.name, re.I)]
        return [_dataset(i) for i in found]

    def dataset(self, identifier: str | Mapping[str, Any] | Image) -> dict[str, Any]:
        """One dataset by id, name or the start of one (a partial URN): the newest that matches."""
        if isinstance(identifier, Image):
            identifier = identifier.id
        elif isinstance(identifier, Mapping):
            identifier = str(identifier.get("id") or identifier["urn"])
        return _dataset(self.api.image(identifier))

    # -- machines --------------------------------------------------------------------------------------

    def machines(self, name: str | None = None, tags: Mapping[str, str] | None = None,
                 state: str | None = None) -> list[Machine]:
        """The machines with all of ``tags`` (and this ``name``, this ``state``)."""
        found = self.api.machines(name=name, tags=tags, state=_FROM_SMARTDC.get(state or "", state))
        return [Machine(m.machine) for m in found]

    def num_machines(self, tags: Mapping[str, str] | None = None) -> int:
        return self.api.num_machines(tags)

    def machine(self, machine_id: str | Mapping[str, Any]) -> Machine:
        """The machine with this id (or name, or a dict with its ``id``)."""
        if isinstance(machine_id, Mapping):
            machine_id = str(machine_id["id"])
        return Machine(self.api.machine(machine_id).machine)

    def create_machine(self, name: str | None = None, package: str | Mapping[str, Any] | Size | None = None,
                       dataset: str | Mapping[str, Any] | Image | None = None,
                       metadata: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                       boot_script: str | None = None, credentials: bool = False,
                       image: str | Mapping[str, Any] | Image | None = None, networks: Any = None, *,
                       timeout: float = DEFAULT_TIMEOUT) -> Machine:
        """Make one machine and run its boot script; returned running (py-smartdc's was ``provisioning``).

        ``package`` and ``dataset`` (or ``image``) are a dict, a name or id; a partial URN is the newest
        image it starts.  A failing boot script is :class:`BootScriptError` (``.machine`` left running), not a
        machine that silently lacks what its script should have made."""
        for keyword, value, why in (("metadata", metadata, "machines carry tags only (tags=)"),
                                    ("credentials", credentials, "machines are reached with your key, no passwords"),
                                    ("networks", networks, "machines are on their provider's default network")):
            if value:
                raise UsageError(f"create_machine: keyword '{keyword}' is not supported: {why}")
        if dataset is not None and image is not None:
            raise UsageError("create_machine: dataset= and image= both name the image: give one")
        chosen = dataset if dataset is not None else image
        image_id = self.dataset(chosen)["id"] if chosen is not None else None
        size = self._size(package).name if package is not None else None
        try:
            made = self.api.create_machine(name=name, image=image_id, size=size, boot_script=boot_script,
                                           tags=tags, timeout=timeout)
        except BootScriptError as exc:
            if isinstance(exc.machine, SyncMachine):
                exc.machine = Machine(exc.machine.machine)
            raise
        return Machine(made.machine)

    # -- helpers ---------------------------------------------------------------------------------------

    def _size(self, package: str | Mapping[str, Any] | Size) -> Size:
        """The size a package names: its exact name, the name in another case, or Joyent's ``<Name> <N>GB``
        — the size of that name with that memory (``Small 1GB`` is ``small`` of 1024 MiB), nothing looser."""
        if isinstance(package, Size):
            return package
        name = str(package["name"]) if isinstance(package, Mapping) else package
        sizes = self.api.sizes()
        for size in sizes:
            if size.name == name:
                return size
        for size in sizes:
            if size.name.lower() == name.lower():
                return size
        joyent = re.fullmatch(r"\s*(.+?)[\s-]+(\d+(?:\.\d+)?)\s*([GM])i?B\s*", name, re.IGNORECASE)
        if joyent:
            word, amount, unit = joyent.groups()
            memory = float(amount) * (1024 if unit.upper() == "G" else 1)
            for size in sizes:
                if size.name.lower() == word.lower() and size.memory_mb == memory:
                    return size
        names = ", ".join(s.name for s in sizes) or "none listed"
        raise UsageError(f"no package '{name}' on {self.api.name} (its sizes: {names})")


def parse_location(location: str) -> tuple[str, dict[str, str]]:
    """A location's provider type and the setting it gives: ``aws:us-east-1`` is ``("aws", {"region": ...})``."""
    kind, _, where = location.partition(":")
    if kind == "local" and not where:
        return "local", {}
    if kind in _LOCATION_SETTING:
        return kind, ({_LOCATION_SETTING[kind]: where} if where else {})
    raise UsageError(f"location '{location}': not a data center cloudherd has a driver for; locations are "
                     f"{', '.join(repr(x) for x in LOCATIONS)} (Joyent's us-east-1, us-sw-1… have none)")


def _login_of(key_id: str | None) -> str | None:
    """``/<login>/keys/<name>``'s login (py-smartdc's account name)."""
    parts = (key_id or "").strip("/").split("/")
    return parts[0] if len(parts) == 3 and parts[1] == "keys" else None


def _private_key(secret: str) -> Path:
    path = Path(secret).expanduser()
    if not path.is_file():
        raise UsageError(f"DataCenter: secret '{secret}': no such private key (it is the key machines are made "
                         f"with and reached by; leave secret= out for cloudherd's own)")
    return path


def _echo_stream(config: Mapping[str, Any], verbose: bool | None) -> IO[str] | None:
    """Where each provider call is echoed: config's ``verbose`` (a stream, or True for stderr) or verbose=."""
    unknown = sorted(set(config) - {"verbose"})
    if unknown:
        raise UsageError(f"DataCenter: config key '{unknown[0]}' has no meaning here: config= takes "
                         f"{{'verbose': stream}} (DEBUG_CONFIG), which cloudherd calls echo=")
    stream = config.get("verbose")
    if stream is True or (stream is None and verbose):
        stream = DEBUG_CONFIG["verbose"]
    if stream in (None, False):
        return None
    if not callable(getattr(stream, "write", None)):
        raise UsageError(f"DataCenter: config['verbose'] must be a stream (sys.stderr) or True, not {stream!r}")
    return stream  # type: ignore[no-any-return]


def _package(size: Size) -> dict[str, Any]:
    return {"name": size.name, "memory": size.memory_mb, "vcpus": size.cpus, "default": size.default}


def _dataset(image: Image) -> dict[str, Any]:
    return {"id": image.id, "urn": image.id, "name": image.name}
