"""OGC's ``ogc.db`` names for its user record: ``M.db.begin(write=True)`` and ``model_as_pickle``.

OGC kept its user in a key-value store; cloudherd keeps users in its database (``cloudherd user add``).  A
transaction here reads and writes those: ``get(slug)`` answers whether a user of that name exists, ``put``
adds the user.  Only users travel this way: a value that is not a :class:`~.models.User` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from cloudherd.compat.ogc.models import User
from cloudherd.errors import UsageError


def model_as_pickle(model: User) -> bytes:
    """The record as bytes (OGC pickled it; a plain JSON line needs no unpickling to read back)."""
    if not isinstance(model, User):
        raise UsageError(f"only OGC's models.User is kept here, not {type(model).__name__}")
    return json.dumps({"user": model.name}).encode()


class _Transaction:
    def get(self, key: bytes) -> bytes | None:
        from cloudherd.compat.ogc.actions import client

        slug = key.decode()
        found = [u for u in client().users() if User(u.name).slug == slug]
        return model_as_pickle(User(found[0].name)) if found else None

    def put(self, key: bytes, value: bytes) -> bool:
        from cloudherd.compat.ogc.actions import client

        try:
            name = json.loads(value)["user"]
        except (ValueError, KeyError, TypeError):
            raise UsageError("put takes model_as_pickle(models.User(...))") from None
        if User(name).slug != key.decode():
            raise UsageError(f"the key {key.decode()!r} is not the slug of {name!r} ({User(name).slug!r})")
        if self.get(key) is None:
            client().add_user(name)
        return True


class _Store:
    @contextmanager
    def begin(self, write: bool = False) -> Iterator[_Transaction]:
        yield _Transaction()


class M:
    """OGC's handle on its store: ``M.db.begin(write=True)``."""

    db = _Store()
