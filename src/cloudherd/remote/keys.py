"""The user's SSH key pair: generated on first use (ed25519) when the named file does not exist."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from cloudherd.errors import UsageError


def ensure_keypair(path: Path) -> tuple[asyncssh.SSHKey, str]:
    """The private key at ``path`` and its OpenSSH public line, making both if missing."""
    path = path.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="cloudherd")
        # written aside and renamed: a process killed half-way never leaves a half-written key
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key())
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
        os.replace(tmp, path)
    try:
        key = asyncssh.read_private_key(str(path))
    except asyncssh.KeyImportError as exc:
        raise UsageError(f"SSH key {path}: cannot be read ({exc}); cloudherd needs a key without passphrase") from None
    except OSError as exc:
        raise UsageError(f"SSH key {path}: {exc.strerror}") from None
    return key, key.export_public_key().decode().strip()
