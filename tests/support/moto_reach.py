"""A reach plugin for emulated clouds: a real local sshd stands in for each instance.

moto makes EC2 instances with addresses nobody answers on; with this plugin named in a provider entry
(``reach: tests.support.moto_reach:LocalStandIns``), every instance gets a local node (real sshd, our key
authorized, its own host key) and cloudherd reaches the instance there — so ``up`` of an ``aws``
group creates through the EC2 API and deploys over real SSH, offline.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cloudherd.providers.base import CreateRequest, Instance, Provider
from cloudherd.providers.local import LocalProvider

STAND_IN_FOR = "stand-in-for"


def _default_public_key() -> str | None:
    from cloudherd.engine.context import default_key_path

    path = default_key_path().with_suffix(".pub")
    return path.read_text().strip() if path.exists() else None


class LocalStandIns:
    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.local = LocalProvider("stand-ins", {})

    async def attach(self, provider: Provider, request: CreateRequest | None,
                     instances: Sequence[Instance]) -> list[Instance]:
        known = {i.tags.get(STAND_IN_FOR): i for i in await self.local.list({}) if i.alive}
        missing = [i for i in instances if i.id not in known and i.alive]
        public_key = request.ssh_public_key if request is not None else _default_public_key()
        if missing and public_key:
            # also on list: an instance made by a run that was killed before its stand-in was made
            stale = [i.id for i in await self.local.list({}) if i.tags.get(STAND_IN_FOR) in {m.id for m in missing}]
            if stale:
                await self.local.terminate(stale)
            made = await asyncio.gather(*(
                self.local.create(CreateRequest(
                    count=1, image=None, size=None, tags={STAND_IN_FOR: i.id, "provider": provider.name},
                    ssh_user=request.ssh_user if request else "", ssh_public_key=public_key,
                    names=[i.name or i.id],
                ))
                for i in missing
            ))
            known.update({i.id: stand_in[0] for i, stand_in in zip(missing, made, strict=True)})
        reached = []
        for instance in instances:
            stand_in = known.get(instance.id)
            if stand_in is None:
                reached.append(instance)
                continue
            reached.append(dataclasses.replace(
                instance, address=stand_in.address, port=stand_in.port, host_key=stand_in.host_key,
                workdir=stand_in.workdir, ssh_user=stand_in.ssh_user,
            ))
        return reached

    async def detach(self, provider: Provider, ids: Sequence[str]) -> None:
        wanted = set(ids)
        gone = [i.id for i in await self.local.list({}) if i.tags.get(STAND_IN_FOR) in wanted]
        if gone:
            await self.local.terminate(gone)
