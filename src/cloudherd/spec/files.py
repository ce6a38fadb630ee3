"""Every file the spec loader reads goes through here: bounded, text only, and located when it fails.

A spec names other files (scripts, a teardown, an SSH key) and has a ``.env`` beside it; any of them
may be missing, a folder, a link loop, a FIFO that would block forever, ``/dev/zero``, far too large,
not UTF-8, or binary.  :func:`read_text` turns each of those into one
:class:`~cloudherd.errors.SpecError` that points at the spec line naming the file (problems opening
it) or at the line inside the file (problems with its content), never an ``OSError`` or a hang.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from cloudherd.errors import SpecError

MIB = 1024 * 1024
MAX_FILE_BYTES = 4 * MIB  # any one file: the spec, a script, a .env
MAX_TOTAL_BYTES = 64 * MIB  # everything one load reads together (a folder of many scripts)
MAX_FOLDER_ENTRIES = 10_000  # files in one scripts folder
_MAX_SHOWN = 160  # characters of user text (paths, keys, values) quoted in one message


def one_line(text: str, limit: int = _MAX_SHOWN) -> str:
    """``text`` safe to print on one line: control characters escaped, cut to ``limit`` characters."""
    out = []
    for char in text:
        if char in "\n\r\t" or (ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0) or char in "\u2028\u2029":
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def spec_error(file: str, line: int | None, path: str, message: str) -> SpecError:
    """A :class:`SpecError` whose rendering is guaranteed to be one line, whatever the user wrote."""
    return SpecError(one_line(file, 4096), line, one_line(path), one_line(message, 1000))


@dataclass(frozen=True)
class Where:
    """Who names a file: the spec, its line and the dotted key; problems opening the file are put here."""

    file: str
    line: int | None = None
    path: str = ""

    def error(self, message: str) -> SpecError:
        return spec_error(self.file, self.line, self.path, message)


@dataclass
class Budget:
    """Bytes one load may still read, so that a folder of many big scripts cannot exhaust memory."""

    left: int = MAX_TOTAL_BYTES
    read: list[str] = field(default_factory=list)

    def take(self, size: int, where: Where, shown: str) -> None:
        if size > self.left:
            raise where.error(f"{shown}: the spec and its files are more than {amount(MAX_TOTAL_BYTES)} together")
        self.left -= size


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno == errno.EISDIR:
        return "is a folder, not a file"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long"
    return exc.strerror or exc.__class__.__name__


def describe_os_error(exc: OSError) -> str:
    """A short lower-case reason for ``exc`` without the file name (the caller names the file)."""
    return _describe(exc)


def kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_text(text: str, shown: str, *, yaml: bool) -> None:
    """Refuse NUL bytes (and, for YAML, the control characters YAML forbids) with the line they are on."""
    bad = text.find("\x00")
    if bad < 0 and yaml:
        for index, char in enumerate(text):
            code = ord(char)
            if (code < 0x20 and char not in "\t\n\r") or 0x7F <= code < 0x85 or 0x86 <= code < 0xA0 \
                    or 0xD800 <= code < 0xE000 or code in (0xFFFE, 0xFFFF):
                bad = index
                break
    if bad >= 0:
        line = text.count("\n", 0, bad) + 1
        column = bad - (text.rfind("\n", 0, bad) + 1) + 1
        what = "a NUL byte" if text[bad] == "\x00" else f"the control character U+{ord(text[bad]):04X}"
        raise spec_error(shown, line, "", f"column {column}: {what} is not allowed here (not a text file?)")


def decode(data: bytes, shown: str) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped), or a SpecError at the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise spec_error(shown, line, "", f"column {column}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def amount(size: int) -> str:
    """``size`` bytes for people: ``4 MiB``, ``5.2 MiB``, ``64 KiB``."""
    if size >= MIB:
        return f"{size / MIB:.1f}".removesuffix(".0") + " MiB"
    return f"{size / 1024:.1f}".removesuffix(".0") + " KiB"


def prefix_of(where: Where, shown: str) -> str:
    return "" if where.file == shown else f"{shown}: "


def read_bytes(
    path: Path, where: Where, *, shown: str | None = None, budget: Budget | None = None, streams: bool = False,
    limit: int = MAX_FILE_BYTES,
) -> bytes:
    """The bytes of the file at ``path``, at most ``limit``; problems opening it are put at ``where``.

    Missing, a folder, a link loop, not a regular file (a FIFO would block forever), too large or
    unreadable: each is one SpecError at ``where`` (the spec line that names the file).  ``streams``
    also accepts a pipe or a device (``cloudherd validate <(…)``), read with the same bound.
    """
    shown = shown or where.file
    prefix = prefix_of(where, shown)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except ValueError:  # an embedded NUL, from a variable
        raise where.error(f"{prefix}the file name has a NUL byte") from None
    except OSError as exc:
        raise where.error(f"{prefix}{_describe(exc)}") from None
    try:
        info = os.fstat(fd)
        regular = stat.S_ISREG(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            raise where.error(f"{prefix}is a folder, not a file")
        if not regular and not (streams and (stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode))):
            raise where.error(f"{prefix}is {kind(info.st_mode)}, not a file")
        too_big = f"a spec and each of its files are at most {amount(limit)}"
        if regular and info.st_size > limit:
            raise where.error(f"{prefix}is {amount(info.st_size)}: {too_big}")
        if not regular:
            os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            try:
                chunk = os.read(fd, min(limit + 1 - size, MIB))
            except OSError as exc:
                raise where.error(f"{prefix}cannot read: {_describe(exc)}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise where.error(f"{prefix}is larger than {amount(limit)}: {too_big}")
    finally:
        os.close(fd)
    if budget is not None:
        budget.take(size, where, shown)
    return b"".join(chunks)


def read_text(
    path: Path, where: Where, *, shown: str | None = None, budget: Budget | None = None, yaml: bool = False,
    streams: bool = False, limit: int = MAX_FILE_BYTES,
) -> str:
    """Like :func:`read_bytes`, as UTF-8 text without NUL bytes; content problems are put at ``shown``:LINE."""
    shown = shown or where.file
    text = decode(read_bytes(path, where, shown=shown, budget=budget, streams=streams, limit=limit), shown)
    check_text(text, shown, yaml=yaml)
    return text


def entry_stat(path: Path, where: Where, shown: str) -> os.stat_result | None:
    """``os.stat`` of a file the spec names (following links); None when nothing is there at all.

    A broken link or a link loop is an error at ``where`` (the user named something that is there but
    cannot be followed), as is a path through a file.
    """
    prefix = prefix_of(where, shown)
    try:
        return path.stat()
    except ValueError:
        raise where.error(f"{prefix}the file name has a NUL byte") from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            try:
                path.lstat()
            except OSError:
                return None
            raise where.error(f"{prefix}a broken symbolic link") from None
        raise where.error(f"{prefix}{_describe(exc)}") from None


_PUBLIC_KEY = re.compile(rb"^\s*(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+")


def check_key(base: Path, key: str, where: Where, budget: Budget) -> None:
    """``ssh.key`` names a private key file, or a place where one can be made on first use."""
    path = Path(key).expanduser()
    path = path if path.is_absolute() else base / path
    info = entry_stat(path, where, key)
    if info is None:
        parent = path.parent
        while True:
            found = entry_stat(parent, where, str(parent))
            if found is not None:
                if not stat.S_ISDIR(found.st_mode):
                    raise where.error(f"{key} cannot be made: {parent} is a file, not a folder")
                return
            if parent == parent.parent:
                return
            parent = parent.parent
    if stat.S_ISDIR(info.st_mode):
        raise where.error(f"{key} is a folder, not a private key file")
    content = read_bytes(path, where, shown=key, budget=budget, limit=64 * 1024)
    if _PUBLIC_KEY.match(content) and b"PRIVATE KEY" not in content:
        raise where.error(f"{key} is a public key: name the private key (usually the same name without .pub)")


def environment(
    folder: Path, environ: Mapping[str, str] | None, display: str, budget: Budget,
) -> dict[str, str]:
    """The process environment over the ``.env`` beside the spec (the process wins, as in compose).

    A ``.env`` folder (a virtualenv named so) is not a dotenv file and is ignored; a ``.env`` that is
    there but cannot be read, is not text, or has a line that is not ``NAME=value`` is an error at its line.
    """
    dotenv_file = folder / ".env"
    shown = str(Path(display).parent / ".env")
    where = Where(shown)
    env: dict[str, str] = {}
    info = entry_stat(dotenv_file, where, shown)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        text = read_text(dotenv_file, where, budget=budget)
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                raise spec_error(shown, binding.original.line, "",
                                 "not a NAME=value line (quote values with spaces or #, e.g. NAME=\"a b\")")
        env.update({k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env
