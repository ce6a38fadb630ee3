"""The user's SSH key pair: generated on first use (ed25519) when the named file does not exist."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import asyncssh

from cloudherd.errors import UsageError
from cloudherd.paths import PRIVATE_FILE, data_dir, private_dir, tighten


def ensure_keypair(path: Path) -> tuple[asyncssh.SSHKey, str]:
    """The private key at ``path`` and its OpenSSH public line, making both if missing."""
    path = path.expanduser()
    ours = _in_data_dir(path)
    if ours:
        private_dir(path.parent)  # 0700 from creation; an older, looser keys folder is tightened
    if not path.exists():
        if not ours:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="cloudherd")
        # written aside and linked into place: a process killed half-way never leaves a half-written key.
        # The file is 0600 from its creation (O_EXCL: never a stale file with another mode left by a
        # crash). A link never replaces: of several first commands started together, one key wins and the
        # others read it (a rename would let a later one swap the key under nodes made with the first).
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key())
        if _place(tmp, path):
            path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    elif ours:
        tighten(path, PRIVATE_FILE)
    try:
        key = asyncssh.read_private_key(str(path))
    except asyncssh.KeyImportError as exc:
        raise UsageError(f"SSH key {path}: cannot be read ({exc}); cloudherd needs a key without passphrase") from None
    except OSError as exc:
        raise UsageError(f"SSH key {path}: {exc.strerror}") from None
    return key, key.export_public_key().decode().strip()


def _place(tmp: Path, path: Path) -> bool:
    """Put ``tmp`` at ``path`` unless a key is there already; whether ours is the one placed."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: a rename, the last writer's key wins
        os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return True


def _in_data_dir(path: Path) -> bool:
    """Whether ``path`` is cloudherd's to keep private (a key the user keeps elsewhere is left as it is)."""
    try:
        return path.resolve().is_relative_to(data_dir().resolve())
    except OSError:
        return False
