"""What OGC's script templates see, over cloudherd's nodes: ``node``, ``nodes``, ``db`` and ``session``.

OGC's templates read its database rows (``node.public_ip``, ``node.instance_name``, ``node.layout.username``)
through helpers whose names changed across releases: ``db.by_tag`` / ``by_name`` / ``by_id`` (2.0-2.1),
``session.query(db.Node).filter(db.Node.tags.contains([...]))`` (2.1.9), ``db.get_nodes().unwrap()``
(2.2-3.0), a ``nodes`` list (4.0 on).  Each is answered here from the fleet as the template context has it,
with the layouts' facts the translated template passes in (user, provider, tags as OGC wrote them).
Plain objects with plain attributes: the Jinja sandbox reaches nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudherd.lifecycle import GONE_NODE_STATES


@dataclass(frozen=True)
class Layout:
    name: str
    username: str | None
    provider: str
    tags: list[str]
    labels: dict[str, str]
    scale: int
    runs_on: str | None
    instance_size: str | None
    remote_path: str | None
    artifacts: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OgcNode:
    """A node with OGC's row names (2.x's and 3.x's both)."""

    id: str
    instance_id: str
    instance_name: str
    instance_state: str
    username: str | None
    public_ip: str | None
    private_ip: str | None
    provider: str
    tags: list[str]
    labels: dict[str, str]
    layout: Layout
    remote_path: str | None
    artifacts: list[str]


class Result(list[OgcNode]):
    """OGC 2.2's ``get_nodes()`` answered a ``returns`` Result: ``unwrap()`` gives the list."""

    def unwrap(self) -> list[OgcNode]:
        return list(self)


class Column:
    """``db.Node.<column>``: ``contains([...])`` and ``== value`` make the filters OGC's templates wrote."""

    def __init__(self, name: str) -> None:
        self.name = name

    def contains(self, values: Iterable[Any]) -> Callable[[OgcNode], bool]:
        wanted = list(values)
        return lambda node: all(v in (getattr(node, self.name) or []) for v in wanted)

    def __eq__(self, value: object) -> Callable[[OgcNode], bool]:  # type: ignore[override]
        return lambda node: getattr(node, self.name) == value

    def __hash__(self) -> int:
        return hash(self.name)

    def in_(self, values: Iterable[Any]) -> Callable[[OgcNode], bool]:
        wanted = list(values)
        return lambda node: getattr(node, self.name) in wanted


class NodeTable:
    """``db.Node``: its columns, for filters."""

    def __getattr__(self, name: str) -> Column:
        if name.startswith("_") or name not in OgcNode.__dataclass_fields__:
            raise AttributeError(name)
        return Column(name)


class Query:
    """``session.query(db.Node)``'s filters, over the fleet."""

    def __init__(self, rows: Sequence[OgcNode]) -> None:
        self._rows = list(rows)

    def filter(self, *tests: Callable[[OgcNode], bool]) -> Query:
        return Query([r for r in self._rows if all(test(r) for test in tests)])

    def filter_by(self, **values: Any) -> Query:
        return Query([r for r in self._rows if all(getattr(r, k, None) == v for k, v in values.items())])

    def all(self) -> list[OgcNode]:
        return list(self._rows)

    def first(self) -> OgcNode | None:
        return self._rows[0] if self._rows else None

    def one(self) -> OgcNode:
        if len(self._rows) != 1:
            raise LookupError(f"{len(self._rows)} nodes match where one was asked for")
        return self._rows[0]

    def count(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[OgcNode]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class Session:
    def query(self, table: Any, *more: Any) -> Query:
        return Query(self._rows)

    def __init__(self, rows: Sequence[OgcNode]) -> None:
        self._rows = list(rows)


class Db:
    """``<%namespace name="db" module="ogc.db"/>`` (2.0-2.1) and ``db.get_nodes()`` (2.2-3.0)."""

    def __init__(self, rows: Sequence[OgcNode]) -> None:
        self._rows = list(rows)
        self.Node = NodeTable()

    def by_tag(self, tag: str) -> Query:
        return Query([r for r in self._rows if tag in r.tags])

    def by_name(self, name: str) -> OgcNode:
        return Query(self._rows).filter_by(instance_name=name).one()

    def by_id(self, id: str) -> OgcNode:
        return Query([r for r in self._rows if id in (r.id, r.instance_id)]).one()

    def get_nodes(self) -> Result:
        return Result(self._rows)


def ogc_names(node: Any, nodes: Iterable[Any], layouts: Mapping[str, Mapping[str, Any]]
              ) -> tuple[OgcNode, list[OgcNode], Db, Session]:
    """(node, nodes, db, session) for one node's template; ``layouts``: group name → its facts."""
    def row(item: Any) -> OgcNode:
        facts = layouts.get(item.group_name, {})
        layout = Layout(name=item.group_name, username=facts.get("username"), provider=facts.get("provider", ""),
                        tags=list(facts.get("tags", [])), labels=dict(facts.get("labels", {})),
                        scale=int(facts.get("scale", 1)),
                        runs_on=facts.get("runs_on"), instance_size=facts.get("instance_size"),
                        remote_path=facts.get("remote_path"), artifacts=list(facts.get("artifacts", [])),
                        ports=list(facts.get("ports", [])))
        return OgcNode(id=item.id, instance_id=item.provider_id or item.id, instance_name=item.name,
                       instance_state=str(item.state), username=getattr(item, "ssh_user", None) or layout.username,
                       public_ip=item.address, private_ip=item.private_address or item.address,
                       provider=layout.provider, tags=layout.tags, labels=layout.labels, layout=layout,
                       remote_path=layout.remote_path, artifacts=layout.artifacts)

    rows = [row(n) for n in nodes if n.state not in GONE_NODE_STATES]
    own = next((r for r in rows if r.id == node.id), None) or row(node)
    return own, rows, Db(rows), Session(rows)
