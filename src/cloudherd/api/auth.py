"""Users and the credentials of the network faces.

Bearer tokens are ``chd_<key id>_<secret>``: the key id finds the row, and only a SHA-256 of the secret
is stored (the secret is 256 random bits, so a slow password hash would add nothing).  AWS-style keys
are different: SigV4 signs with the secret itself, so the server must be able to read it back; it is
kept sealed (Fernet, AES-128-CBC + HMAC) with a key held outside the database: ``CLOUDHERD_SECRET_KEY``,
or a 0600 file in the data folder made on first use.  A copy of the database alone gives no secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cloudherd.api.types import IssuedToken, Token, User
from cloudherd.errors import UsageError
from cloudherd.paths import PRIVATE_FILE, data_dir, private_dir
from cloudherd.settings import Settings, current
from cloudherd.state.models import ApiToken
from cloudherd.state.repo import Store

TOKEN_PREFIX = "chd_"
SECRET_KEY_ENV = "CLOUDHERD_SECRET_KEY"


@dataclass(frozen=True)
class Principal:
    """Who a request is from."""

    user_id: str
    user_name: str
    token_id: str


def secret_key_path() -> Path:
    return private_dir(data_dir() / "keys") / "secrets.key"


_sealers: dict[str, object] = {}  # by where the key came from: made once, not at every signed request


def _fernet() -> object:
    # keyed by what decides the key's place, cheaply: finding the data folder costs more than the decryption
    settings = current()
    where = _secret(settings) or "|".join((settings.home or "", *(os.environ.get(name, "")
                                                                   for name in ("XDG_DATA_HOME", "HOME"))))
    sealer = _sealers.get(where)
    if sealer is None:
        sealer = _sealers[where] = _make_fernet()
    return sealer


def _secret(settings: Settings) -> str:
    return settings.secret_key or ""


def _make_fernet() -> object:
    from cryptography.fernet import Fernet

    key = _secret(current())
    if not key:
        path = secret_key_path()
        if not path.exists():
            fresh = Fernet.generate_key()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            except FileExistsError:
                pass  # made meanwhile by another process: read below
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(fresh)
        key = path.read_text().strip()
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except ValueError:
        raise UsageError(f"{SECRET_KEY_ENV} (or {secret_key_path()}) is not a Fernet key: make one with "
                         "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
                         ) from None


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()  # type: ignore[attr-defined, no-any-return]


def unseal(sealed: str) -> str | None:
    """The secret, or None when it was sealed with another key (then the key cannot be used)."""
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(sealed.encode()).decode()  # type: ignore[attr-defined, no-any-return]
    except InvalidToken:
        return None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_of(store: Store, name: str | None) -> tuple[str, str]:
    """(id, name) of the user called ``name``, or of the current user (made on first use)."""
    if name is None:
        from cloudherd.engine.context import ensure_identity

        identity = ensure_identity(store)
        return identity.user_id, identity.user_name
    row = store.user(name)
    if row is None:
        raise UsageError(f"no user '{name}' (add one with `cloudherd user add {name}`)")
    return row.id, row.name


def add_user(store: Store, name: str) -> User:
    name = name.strip()
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        raise UsageError("a user name is one word of at most 200 characters")
    row = store.add_user(name)
    return User(id=row.id, name=row.name, created_at=row.created_at)


def users(store: Store) -> list[User]:
    return [User(id=u.id, name=u.name, created_at=u.created_at) for u in store.users()]


def create_token(store: Store, *, user: str | None = None, name: str | None = None, aws: bool = False) -> IssuedToken:
    user_id, user_name = user_of(store, user)
    label = name or ("aws" if aws else "api")
    if aws:
        key_id = "CHIA" + base64.b32encode(secrets.token_bytes(10)).decode()[:16]
        secret = base64.b64encode(secrets.token_bytes(30)).decode()
        row = store.add_token(user_id=user_id, name=label, kind="aws", key_id=key_id, secret_sealed=seal(secret))
        return IssuedToken(id=row.id, name=label, user=user_name, kind="aws", access_key_id=key_id,
                           secret_access_key=secret)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = store.add_token(user_id=user_id, name=label, kind="bearer", key_id=key_id, secret_hash=_digest(secret))
    return IssuedToken(id=row.id, name=label, user=user_name, kind="bearer", token=f"{TOKEN_PREFIX}{key_id}_{secret}")


def tokens(store: Store, *, user: str | None = None) -> list[Token]:
    names = {u.id: u.name for u in store.users()}
    user_id = user_of(store, user)[0] if user is not None else None
    return [_token(t, names.get(t.user_id, "?")) for t in store.tokens(user_id)]


def revoke_token(store: Store, ref: str) -> Token:
    row = store.revoke_token(ref)
    user = store.user_by_id(row.user_id)
    return _token(row, user.name if user else "?")


def _token(row: ApiToken, user: str) -> Token:
    return Token(id=row.id, name=row.name, user=user, kind=row.kind, key_id=row.key_id, created_at=row.created_at,
                 last_used_at=row.last_used_at, revoked_at=row.revoked_at)


def authenticate(store: Store, presented: str) -> Principal | None:
    """Who a bearer token is from; None for a malformed, unknown, revoked or wrong one (all alike to a caller)."""
    if not presented.startswith(TOKEN_PREFIX):
        return None
    key_id, _, secret = presented[len(TOKEN_PREFIX):].partition("_")
    found = store.token_and_user(key_id) if key_id and secret else None
    if found is None:
        return None
    row, user = found
    if row.kind != "bearer" or row.revoked_at is not None or row.secret_hash is None:
        return None
    if not hmac.compare_digest(row.secret_hash, _digest(secret)):
        return None
    return Principal(user.id, user.name, row.id)


def aws_secret(store: Store, access_key_id: str) -> tuple[Principal, str] | None:
    """The principal and secret of a live AWS-style key, for checking a SigV4 signature."""
    found = store.token_and_user(access_key_id)  # one query: this runs for every signed request
    if found is None:
        return None
    row, user = found
    if row.kind != "aws" or row.revoked_at is not None or row.secret_sealed is None:
        return None
    secret = unseal(row.secret_sealed)
    return (Principal(user.id, user.name, row.id), secret) if secret is not None else None
