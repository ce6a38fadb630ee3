"""py-smartdc's ``DataCenter`` over any cloudherd provider: list, count and create machines, browse sizes and images.

>>> from cloudherd import DataCenter
>>> east = DataCenter("aws", region="us-east-1")         # or DataCenter("local"): sshd nodes on this computer
>>> machine = east.create_machine(name="test-machine", size=east.default_size().name,
...                               boot_script="./test-script.sh", tags={"type": "test"})
>>> machine == east.machines(name="test-machine")[0]
>>> east.num_machines(tags={"type": "test"})
>>> machine.stop(); machine.poll_until("stopped"); machine.delete()

:class:`DataCenter` blocks, as py-smartdc does, and hands out :class:`~cloudherd.api.machine.SyncMachine`
handles; :class:`AsyncDataCenter` is the async original (``await``, :class:`~cloudherd.api.machine.Machine`).

Machines made here are not part of an infrastructure: they carry ``cloudherd:owner`` (and
``cloudherd:node``, their name) but no ``cloudherd:infra`` tag, so ``gc`` never takes them for orphans and no
``up`` touches them.  They are reached with cloudherd's key pair (``cloudherd init`` makes it; ``key=``
names another).  A boot script runs once, over SSH, as soon as the new machine answers: no provider here
takes user data at create time, so cloudherd runs it itself and ``create_machine`` returns after it
succeeded (:class:`BootScriptError` otherwise, with the machine left running for a look).
"""

from __future__ import annotations

import getpass
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar

from cloudherd.api.machine import DEFAULT_TIMEOUT, Machine, SyncMachine
from cloudherd.api.twin import Twin, blocking
from cloudherd.api.types import Image, Size
from cloudherd.errors import DeployError, UsageError
from cloudherd.providers.base import TAG_NODE, TAG_OWNER, CreateRequest, InstanceState, Provider
from cloudherd.providers.base import Image as ProviderImage
from cloudherd.providers.wrapper import ProviderWrapper

PathLike = str | os.PathLike[str]
T = TypeVar("T")

# Keywords of other tools' DataCenter that are no provider setting, and what cloudherd calls them: refused by
# name, so that none is stored as a setting nobody reads (py-smartdc's, mapped by cloudherd.compat.smartdc).
FOREIGN_KEYWORDS = {
    "location": "the provider: DataCenter('aws', region='us-east-1'), or location= of cloudherd.compat.smartdc",
    "key_id": "no account key: machines get the public half of key= (cloudherd.compat.smartdc keeps key_id "
              "as the key's name)",
    "secret": "key= (the private key machines are made with and reached by)",
    "config": "echo= (a stream each provider call is written to; cloudherd.compat.smartdc maps config=DEBUG_CONFIG)",
    "verbose": "echo=sys.stderr",
    "login": "no account login: user= is the login user of the machines",
    "headers": "nothing: no HTTP API of cloudherd's own is called",
    "known_locations": "the provider type and its region/zone settings",
}
# Settings a driver reads beyond its spec model's keys (the model lets a driver's own keys through)
_DRIVER_READS = {"aws": {"architecture", "vpc_id"},
                 "gce": {"anonymous", "credentials", "disk_type", "network", "subnetwork"}}


class BootScriptError(DeployError):
    """A machine's boot script failed (or the machine never answered SSH); the machine is left as it is."""

    machine: Machine | SyncMachine  # a SyncMachine when raised by DataCenter

    def __init__(self, message: str, machine: Machine | SyncMachine, exit_status: int | None = None, stdout: str = "",
                 stderr: str = "") -> None:
        super().__init__(message)
        self.machine = machine
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr


class AsyncDataCenter:
    """A connection to one provider: ``AsyncDataCenter("local")``, ``AsyncDataCenter("aws", region="us-east-1")``.

    ``provider`` is a provider type (configured from the environment and ``settings``, as a spec's provider
    entry is), or a :class:`~cloudherd.providers.base.Provider` made already.  ``kind`` gives the type when
    ``provider`` is a name of your choosing.  ``key`` is the private key machines are made with and reached
    by (default: cloudherd's own), ``user`` the login user asked for (default: yours).  ``echo`` (a text
    stream) gets one line per provider call, as py-smartdc's debug config echoed each CloudAPI request.

    A setting the provider type does not read is refused with its name (and, for another tool's keyword such
    as py-smartdc's ``secret``, what cloudherd calls it): a misspelt or foreign keyword is never kept as a
    setting that nothing reads.  libcloud's settings, and those of a provider with a ``reach`` plugin, go to
    the driver / plugin as they are.
    """

    def __init__(self, provider: str | Provider = "local", *, kind: str | None = None, key: PathLike | None = None,
                 user: str | None = None, echo: IO[str] | None = None, **settings: Any) -> None:
        self._kind = kind
        self._settings = dict(settings)
        if isinstance(provider, Provider):
            if kind or settings:
                raise UsageError("a provider object is configured already: no kind or settings with it")
            self.provider = provider
        else:
            from cloudherd.providers import make_provider

            _check_settings(kind or provider, settings)
            self.provider = make_provider(provider, kind or provider, settings)
        self.echo = echo
        if echo is not None:
            self.provider = _EchoingProvider(self.provider, echo)
        self._key_path = Path(key).expanduser() if key else None
        self.user = user or getpass.getuser()

    @property
    def name(self) -> str:
        return self.provider.name

    def __repr__(self) -> str:
        return f"<AsyncDataCenter {self.provider.name} ({self.provider.type})>"

    async def close(self) -> None:
        """Release the provider's connections."""
        await self.provider.close()

    async def __aenter__(self) -> AsyncDataCenter:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    # -- machines --------------------------------------------------------------------------------------

    async def machines(self, name: str | None = None, tags: Mapping[str, str] | None = None,
                       state: str | None = None) -> list[Machine]:
        """Every machine of the provider with all of ``tags`` (and this ``name``, this ``state``), by name."""
        found = [Machine(self.provider, i) for i in await self.provider.list(dict(tags or {}))]
        return sorted((m for m in found if (name is None or m.name == name) and (state is None or m.state == state)),
                      key=lambda m: (m.name, m.id))

    async def num_machines(self, tags: Mapping[str, str] | None = None) -> int:
        """How many machines carry all of ``tags`` (one list call)."""
        return len(await self.provider.list(dict(tags or {})))

    async def machine(self, id: str) -> Machine:
        """The machine with this id (or name); UsageError when the provider lists none."""
        for found in await self.machines():
            if id in (found.id, found.name):
                return found
        raise UsageError(f"no machine '{id}' on {self.provider.name}")

    async def create_machine(self, name: str | None = None, image: str | None = None, size: str | None = None,
                             boot_script: PathLike | None = None, tags: Mapping[str, str] | None = None, *,
                             timeout: float = DEFAULT_TIMEOUT) -> Machine:
        """Make one machine (the provider's default image and size unless given) and run its boot script.

        ``boot_script`` is a file (a path) or the script's text; it runs once, as soon as the machine
        answers SSH (within ``timeout`` seconds), and this returns once it succeeded.  ``name`` defaults to
        a fresh ``machine-…``.  The handle returned is running.
        """
        from cloudherd.remote.keys import ensure_keypair

        script = _script_text(boot_script)
        name = name or f"machine-{uuid.uuid4().hex[:8]}"
        key, public = ensure_keypair(self._key_path or _default_key_path())
        all_tags = {**{str(k): str(v) for k, v in (tags or {}).items()}, TAG_OWNER: self.user, TAG_NODE: name}
        request = CreateRequest(count=1, image=image, size=size, tags=all_tags, ssh_user=self.user,
                                ssh_public_key=public, names=[name], token=f"machine-{uuid.uuid4().hex}")
        made = await self.provider.create(request)
        if not made:
            raise UsageError(f"{self.provider.name} made no machine for {name}")
        machine = Machine(self.provider, made[0])
        if machine.state != InstanceState.RUNNING or not machine.address:
            await machine.poll_until(InstanceState.RUNNING, timeout=timeout)
        if script is not None:
            await _run_boot_script(machine, key, self.user, script, timeout)
        return machine

    # -- catalogs --------------------------------------------------------------------------------------

    async def sizes(self, regex: str | None = None) -> list[Size]:
        """Machine sizes whose name matches ``regex`` (py-smartdc's packages); the default is marked."""
        check_regex(regex)
        default = await self.provider.default_size()
        return [Size(name=s.name, cpus=s.cpus, memory_mb=s.memory_mb, default=s.name == default)
                for s in await self.provider.sizes(regex)]

    async def images(self, regex: str | None = None) -> list[Image]:
        """Images whose name matches ``regex`` (py-smartdc's datasets)."""
        check_regex(regex)
        return [Image(id=i.id, name=i.name) for i in await self.provider.images(regex)]

    async def default_size(self) -> Size | None:
        """The size machines get when none is asked for (py-smartdc's default package)."""
        default = await self.provider.default_size()
        if default is None:
            return None
        for size in await self.sizes():
            if size.name == default:
                return size
        return Size(name=default, cpus=0, memory_mb=0, default=True)

    async def image(self, identifier: str) -> Image:
        """One image by id or name, or by the start of one (py-smartdc's ``dataset('sdc:sdc:smartos64:')``).

        Why a prefix: an image name without its version (``debian-12-amd64-``, a partial URN) means the
        newest of that line, as Joyent's CloudAPI resolved it; the newest is the latest ``created`` the
        provider tells, else the highest version in the name.  On ``local``, whose one image is this
        computer's system, another cloud's image name stands for it — as it does in a spec placed there —
        and the image keeps the name asked for as its ``id`` (UsageError elsewhere when nothing matches).
        """
        found = await self.provider.images()
        exact = [i for i in found if identifier in (i.id, i.name)]
        partial = exact or [i for i in found if i.id.startswith(identifier) or i.name.startswith(identifier)]
        if partial:
            best = max(partial, key=_newest_first)
            return Image(id=best.id, name=best.name)
        if self.provider.type == "local" and len(found) == 1 and identifier.strip():
            return Image(id=identifier, name=found[0].name)
        names = ", ".join(sorted(i.name for i in found)[:10]) or "none listed"
        raise UsageError(f"no image '{identifier}' (nor one starting so) on {self.provider.name} (images: {names})")

    async def keys(self) -> list[dict[str, str]]:
        """The public SSH keys machines of this data center are made with, as CloudAPI's ``GET /keys`` lists
        an account's: ``name``, ``fingerprint`` (MD5, as CloudAPI's), ``key`` (the OpenSSH line).

        Why one: cloudherd has no account to upload keys to; the key a machine trusts is the public half of
        ``key=`` (cloudherd's own by default, made on first use as ``create_machine`` would)."""
        from cloudherd.remote.keys import ensure_keypair

        path = self._key_path or _default_key_path()
        key, public = ensure_keypair(path)
        fingerprint = key.get_fingerprint("md5").removeprefix("MD5:")
        return [{"name": path.name, "fingerprint": fingerprint, "key": public}]

    def datacenter(self, provider: str | Provider, *, kind: str | None = None, **settings: Any) -> AsyncDataCenter:
        """Another data center with this one's key, login user and echo (py-smartdc's ``datacenter(name)``)."""
        return AsyncDataCenter(provider, kind=kind, key=self._key_path, user=self.user, echo=self.echo, **settings)

    # py-smartdc's words for the same
    packages = sizes
    datasets = images
    dataset = image
    default_package = default_size


class DataCenter(Twin[AsyncDataCenter], of=AsyncDataCenter):
    """The blocking :class:`AsyncDataCenter`, as py-smartdc's ``DataCenter`` is; machines are :class:`SyncMachine`.

    Generated (:mod:`cloudherd.api.twin`): each call runs to completion on the twins' event loop, so it cannot
    be used inside a running one (use :class:`AsyncDataCenter` there).
    """

    @property
    def provider(self) -> Provider:
        return self.aio.provider

    def __repr__(self) -> str:
        return f"<DataCenter {self.provider.name} ({self.provider.type})>"

    def _twin_error(self, error: Exception) -> None:
        if isinstance(error, BootScriptError) and isinstance(error.machine, Machine):
            error.machine = SyncMachine(error.machine)  # the machine left running, as a handle of this API

    if TYPE_CHECKING:  # what Twin generates, for mypy
        name: str
        def __init__(self, provider: str | Provider = "local", *, kind: str | None = None, key: PathLike | None = None,
                     user: str | None = None, echo: IO[str] | None = None, **settings: Any) -> None: ...
        close = blocking(AsyncDataCenter.close)
        num_machines = blocking(AsyncDataCenter.num_machines)
        sizes = packages = blocking(AsyncDataCenter.sizes)
        images = datasets = blocking(AsyncDataCenter.images)
        default_size = default_package = blocking(AsyncDataCenter.default_size)
        image = dataset = blocking(AsyncDataCenter.image)
        keys = blocking(AsyncDataCenter.keys)

        def __enter__(self) -> DataCenter: ...
        def __exit__(self, *exc: object) -> None: ...
        def machines(self, name: str | None = None, tags: Mapping[str, str] | None = None,
                     state: str | None = None) -> list[SyncMachine]: ...
        def machine(self, id: str) -> SyncMachine: ...
        def create_machine(self, name: str | None = None, image: str | None = None, size: str | None = None,
                           boot_script: PathLike | None = None, tags: Mapping[str, str] | None = None, *,
                           timeout: float = DEFAULT_TIMEOUT) -> SyncMachine: ...
        def datacenter(self, provider: str | Provider, *, kind: str | None = None, **settings: Any) -> DataCenter: ...


# -- helpers -----------------------------------------------------------------------------------------------


def _default_key_path() -> Path:
    from cloudherd.engine.context import default_key_path

    return default_key_path()


def _script_text(boot_script: PathLike | None) -> str | None:
    """A path's contents, or the text itself (a string with a line break, or naming no file, is text)."""
    if boot_script is None:
        return None
    if isinstance(boot_script, os.PathLike):
        return Path(boot_script).expanduser().read_text()
    if "\n" not in boot_script:
        path = Path(boot_script).expanduser()
        if path.is_file():
            return path.read_text()
        if boot_script.startswith(("./", "/", "~")) or boot_script.endswith(".sh"):
            raise UsageError(f"boot script {boot_script}: no such file")
    return boot_script


class _EchoingProvider(ProviderWrapper):
    """Writes one line per provider call to a stream before making it: what py-smartdc's debug config did
    for each CloudAPI request, so a user sees which calls a DataCenter method costs."""

    def __init__(self, inner: Provider, stream: IO[str]) -> None:
        super().__init__(inner)
        self.listing_lag = inner.listing_lag
        self.stream = stream

    async def _through(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.stream.write(f"{stamp} cloudherd {self.name} ({self.type}): {operation}\n")
        self.stream.flush()
        return await call()


def _check_settings(kind: str, settings: Mapping[str, Any]) -> None:
    """Refuse a setting the provider type does not read (see :class:`AsyncDataCenter`)."""
    from cloudherd.spec.providers import MODELS, WRAPPER_KEYS

    model = MODELS.get(kind)
    if model is None or kind == "libcloud" or settings.get("reach"):
        return  # an unknown type is make_provider's error; libcloud's and a plugin's settings are theirs
    known = (set(model.model_fields) - {"type", "rate", "burst", "in_flight"}) | set(WRAPPER_KEYS)
    known |= _DRIVER_READS.get(kind, set())
    for key in settings:
        if key in known:
            continue
        if key in FOREIGN_KEYWORDS:
            raise UsageError(f"DataCenter: unknown keyword '{key}': cloudherd calls it {FOREIGN_KEYWORDS[key]}")
        raise UsageError(f"DataCenter: unknown keyword '{key}' for a {kind} provider "
                         f"(its settings: {', '.join(sorted(known))})")


def _newest_first(image: ProviderImage) -> tuple[str, list[tuple[int, str]]]:
    """The sort key of "newest": the provider's creation time, then the name's version (numbers as numbers)."""
    created = str(image.extra.get("created") or "")
    return created, [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", image.name)]


def check_regex(regex: str | None) -> None:
    """A pattern given by the caller compiles, or a usage error saying why (never re's traceback)."""
    if regex is None:
        return
    try:
        re.compile(regex)
    except re.error as exc:
        raise UsageError(f"not a regular expression: {regex!r} ({exc})") from None


async def _run_boot_script(machine: Machine, key: Any, user: str, script: str, timeout: float) -> None:
    from cloudherd.remote.scripts import script_command
    from cloudherd.remote.ssh import Target, connect, run

    instance = machine.instance
    target = Target(machine.name, instance.address or "", instance.port, instance.ssh_user or user,
                    host_key=instance.host_key, workdir=instance.workdir)
    try:
        conn, _ = await connect(target, key, timeout=timeout)
    except DeployError as exc:
        raise BootScriptError(f"machine {machine.name} ({machine.id}): boot script not run: {exc}", machine) from exc
    async with conn:
        result = await run(conn, script_command("boot-script", {}), input=script)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise BootScriptError(f"machine {machine.name} ({machine.id}): boot script exited {result.exit_code}: "
                              f"{tail[0][:300]} (the machine is left running)", machine, result.exit_code,
                              result.stdout, result.stderr)
