"""A spec sent over HTTP, put where the loader can read it: a YAML or JSON body (scripts inline in the
spec), or a tar.gz bundle of the spec and its script files.

Each upload gets a folder of its own under the data folder, kept for the infrastructure's life: its
scripts are re-read from there on a converge, as a spec's files are from beside it.  A bundle is checked
before anything is written: regular files and folders only, relative paths that stay inside, bounded
sizes — a hostile archive cannot write outside its folder or fill the disk.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import uuid
from pathlib import Path, PurePosixPath

from cloudherd.errors import UsageError
from cloudherd.paths import data_dir, private_dir

MAX_SPEC_BYTES = 1 << 20
MAX_BUNDLE_BYTES = 50 << 20
MAX_BUNDLE_FILES = 2000
MAX_UNPACKED_BYTES = 4 * MAX_BUNDLE_BYTES
SPEC_NAMES = ("cloudherd.yml", "cloudherd.yaml", "cloudherd.json")
BUNDLE_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar", "application/x-gtar",
                "application/octet-stream")


def new_folder() -> Path:
    return private_dir(private_dir(data_dir() / "server" / "uploads") / uuid.uuid4().hex)


def receive(body: bytes, content_type: str) -> Path:
    """The spec file of an upload, written out; UsageError (400) for what cannot be one."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in BUNDLE_TYPES or body[:2] == b"\x1f\x8b":
        return _bundle(body)
    if not body.strip():
        raise UsageError("the request body is empty: send a spec (YAML or JSON) or a tar.gz bundle")
    if len(body) > MAX_SPEC_BYTES:
        raise UsageError(f"a spec body is at most {MAX_SPEC_BYTES // 1024} KiB (send big files in a tar.gz bundle)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the spec is not UTF-8 text") from None
    path = new_folder() / "cloudherd.yml"
    path.write_text(text)
    return path


def _bundle(body: bytes) -> Path:
    if len(body) > MAX_BUNDLE_BYTES:
        raise UsageError(f"a bundle is at most {MAX_BUNDLE_BYTES >> 20} MiB")
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
            return _unpack(archive)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UsageError(f"the bundle is not a readable tar.gz: {exc}") from None


def _index(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The bundle's entries, checked one by one as its index is read: a bundle of 400 000 empty entries, or
    one whose sizes add up past the limit, is refused at the first entry too many, not after all are read."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in archive:
        members.append(member)
        if len(members) > MAX_BUNDLE_FILES:
            raise UsageError(f"the bundle holds more than {MAX_BUNDLE_FILES} entries")
        _check_member(member)
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise UsageError(f"the bundle unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
    return members


def _unpack(archive: tarfile.TarFile) -> Path:
    members = _index(archive)
    folder = new_folder()
    for member in members:
        target = folder.joinpath(*_parts(member.name))
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = archive.extractfile(member)
        target.write_bytes(source.read() if source is not None else b"")
        if member.mode & 0o100:
            target.chmod(0o700)
    return _spec_in(folder)


def discard(spec: Path) -> None:
    """Remove an upload's folder: the spec was refused, or only planned (kept only for what it made)."""
    root = data_dir() / "server" / "uploads"
    for folder in (spec.parent, *spec.parents):
        if folder.parent == root:
            shutil.rmtree(folder, ignore_errors=True)
            return


def _parts(name: str) -> tuple[str, ...]:
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    return parts


def _check_member(member: tarfile.TarInfo) -> None:
    if not (member.isfile() or member.isdir()):
        raise UsageError(f"the bundle's '{member.name}' is not a file or folder (links and devices are refused)")
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise UsageError(f"the bundle's '{member.name}' points outside the bundle")


def _spec_in(folder: Path) -> Path:
    """The bundle's spec: cloudherd.yml (or .yaml / .json) at its top, or inside its one top folder."""
    for base in (folder, *[p for p in folder.iterdir() if p.is_dir()][:1]):
        for name in SPEC_NAMES:
            if (base / name).is_file():
                return base / name
        specs = [p for p in base.iterdir() if p.is_file() and p.suffix in (".yml", ".yaml")]
        if len(specs) == 1:
            return specs[0]
    raise UsageError("the bundle has no spec: put cloudherd.yml at its top")
