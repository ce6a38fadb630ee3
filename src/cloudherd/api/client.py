"""The Python API.  The CLI and the REST service are thin faces over these methods.

>>> from cloudherd.api import SyncClient
>>> with SyncClient() as herd:
...     infra_id = herd.up("examples/hello/cloudherd.yml")
...     [r.stdout for r in herd.exec(infra_id, "hostname")]
...     herd.down(infra_id)

Every method returns frozen values from :mod:`cloudherd.api.types`, never database rows.
:class:`SyncClient` is the blocking twin: the same methods with the same signatures, generated
(:mod:`cloudherd.api.twin`).  :class:`Client` is put together by concern: its reading queries
(:mod:`.client_queries`), its life-cycle commands (:mod:`.client_commands`), its commands on the fleet
(:mod:`.client_fleet`) and OGC's calls (:mod:`.ogc`), over :mod:`.client_core`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from cloudherd.api.client_choices import ChoiceCommands
from cloudherd.api.client_commands import Commands
from cloudherd.api.client_core import PathLike, Selectable, Specs, Tags
from cloudherd.api.client_fleet import FleetCommands
from cloudherd.api.client_hooks import HookCommands
from cloudherd.api.ogc import OgcActions, SyncOgcActions
from cloudherd.api.twin import blocking

if TYPE_CHECKING:
    from cloudherd.remote.pool import ConnectionPool
    from cloudherd.state.repo import Store

__all__ = ["Client", "PathLike", "Selectable", "Specs", "SyncClient", "Tags"]


class Client(Commands, FleetCommands, ChoiceCommands, HookCommands, OgcActions):
    """Async access to cloudherd; ``db_url`` defaults to ``CLOUDHERD_DB`` or SQLite in the data folder.

    Use it as ``async with Client() as herd:`` (or call :meth:`close`) so that its database
    connections are released.
    """


class SyncClient(SyncOgcActions[Client], of=Client):
    """The blocking twin of :class:`Client`: the same methods and signatures, each run to completion on the twins'
    event loop (generated, :mod:`cloudherd.api.twin`).

    It cannot be used inside a running event loop (use :class:`Client` with ``await`` there).
    """

    if TYPE_CHECKING:  # what Twin generates, for mypy
        def __init__(self, db_url: str | None = None) -> None: ...
        @property
        def store(self) -> Store: ...
        def keep_connections(self, pool: ConnectionPool | None) -> None: ...
        def __enter__(self) -> SyncClient: ...
        def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                     traceback: TracebackType | None) -> None: ...
        abort = blocking(Client.abort)
        add_user = blocking(Client.add_user)
        adopt = blocking(Client.adopt)
        attach = blocking(Client.attach)
        attach_machines = blocking(Client.attach_machines)
        close = blocking(Client.close)
        complete_hook = blocking(Client.complete_hook)
        convert = blocking(Client.convert)
        cost = blocking(Client.cost)
        create_token = blocking(Client.create_token)
        detach = blocking(Client.detach)
        detach_nodes = blocking(Client.detach_nodes)
        down = blocking(Client.down)
        events = blocking(Client.events)
        exec = blocking(Client.exec)
        fault = blocking(Client.fault)
        gc = blocking(Client.gc)
        heartbeat_hook = blocking(Client.heartbeat_hook)
        history = blocking(Client.history)
        why = blocking(Client.why)
        hooks = blocking(Client.hooks)
        images = blocking(Client.images)
        import_node_defs = blocking(Client.import_node_defs)
        infrastructure = blocking(Client.infrastructure)
        init = blocking(Client.init)
        logs = blocking(Client.logs)
        ls = blocking(Client.ls)
        manage = blocking(Client.manage)
        node = blocking(Client.node)
        plan = blocking(Client.plan)
        protect = blocking(Client.protect)
        pull = blocking(Client.pull)
        push = blocking(Client.push)
        regions = blocking(Client.regions)
        resume = blocking(Client.resume)
        resume_processes = blocking(Client.resume_processes)
        revoke_token = blocking(Client.revoke_token)
        rollback = blocking(Client.rollback)
        rollout = blocking(Client.rollout)
        scale = blocking(Client.scale)
        sizes = blocking(Client.sizes)
        ssh_command = blocking(Client.ssh_command)
        standby = blocking(Client.standby)
        start_machines = blocking(Client.start_machines)
        stop_machines = blocking(Client.stop_machines)
        status = blocking(Client.status)
        submit = blocking(Client.submit)
        suspend = blocking(Client.suspend)
        tokens = blocking(Client.tokens)
        up = blocking(Client.up)
        users = blocking(Client.users)
        validate = blocking(Client.validate)
