"""One health probe of one node as its group's spec says (SSH, ports, URLs rendered for the fleet, a command):
shared by the manager's passes and by a rollout's health gate."""

from __future__ import annotations

from collections.abc import Sequence

from cloudherd.engine.health import CheckResult, check
from cloudherd.engine.reach import Reach
from cloudherd.engine.templates import node_env, node_view, template_context
from cloudherd.errors import CloudherdError
from cloudherd.remote.pool import ConnectionPool
from cloudherd.remote.scripts import in_workdir, render
from cloudherd.spec import LoadedSpec
from cloudherd.state.models import Infrastructure, Node


async def probe(node: Node, nodes: Sequence[Node], infra: Infrastructure, loaded: LoadedSpec, pool: ConnectionPool,
                reach: Reach) -> CheckResult:
    health = loaded.group(node.group_name).health
    urls: list[str] = []
    if health.urls:  # the template context spans the whole fleet: built only for the checks that use it
        context = template_context(node, nodes, infra, loaded.variables_for(node.group_name), loaded.env)
        try:
            urls = [render(f"health url of {node.group_name}", url, context) for url in health.urls]
        except CloudherdError as exc:
            return CheckResult(False, Exception.__str__(exc))
    command = None
    if health.command:
        command = in_workdir(health.command, node_env(node, loaded.group(node.group_name).env))
    return await check(node_view(node), reach.target(node), health, pool, urls, command)
