"""GCE's names: tags as *labels* (``[a-z0-9_-]``, 63 characters), encoded reversibly (see the package notes);
instance names made valid; the ``requestId`` that makes a retried bulkInsert a replay."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence

from cloudherd.providers.base import InvalidRequestError

TOKEN_NAMESPACE = uuid.UUID("5d0c3c3e-7d5e-4a43-9a59-5a1f0b8c6c01")  # UUID5 namespace of create tokens
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEY_MARK = "x_-0"  # starts a label key whose tag key does not start with a-z (never made otherwise)


def encode_label(text: str) -> str:
    """``text`` in GCE's label alphabet ``[a-z0-9_-]``, reversibly (see :func:`decode_label`).

    ``[a-z0-9-]`` stay; ``:`` is ``_`` when followed by ``[a-z0-9]`` or at the end, else ``_-``; any other
    character is ``__`` + 2 hex digits, ``___`` + 4 or ``__-`` + 6 (its code point).
    """
    out: list[str] = []
    for index, char in enumerate(text):
        if "a" <= char <= "z" or "0" <= char <= "9" or char == "-":
            out.append(char)
        elif char == ":":
            following = text[index + 1] if index + 1 < len(text) else ""
            out.append("_" if following == "" or "a" <= following <= "z" or "0" <= following <= "9" else "_-")
        else:
            code = ord(char)
            out.append(f"__{code:02x}" if code <= 0xFF else f"___{code:04x}" if code <= 0xFFFF else f"__-{code:06x}")
    return "".join(out)


def decode_label(text: str) -> str:
    """The inverse of :func:`encode_label`; text that is not such an encoding is returned as it is."""
    out: list[str] = []
    i = 0
    try:
        while i < len(text):
            char = text[i]
            if char != "_":
                out.append(char)
                i += 1
                continue
            following = text[i + 1] if i + 1 < len(text) else ""
            if following == "-":
                out.append(":")
                i += 2
            elif following != "_":
                out.append(":")
                i += 1
            else:
                kind = text[i + 2] if i + 2 < len(text) else ""
                width, start = (4, i + 3) if kind == "_" else (6, i + 3) if kind == "-" else (2, i + 2)
                digits = text[start:start + width]
                if len(digits) != width or not re.fullmatch(r"[0-9a-f]+", digits):
                    return text
                out.append(chr(int(digits, 16)))
                i = start + width
    except (ValueError, OverflowError):
        return text
    return "".join(out)


def label_key(key: str) -> str:
    encoded = encode_label(key)
    return encoded if encoded[:1].isalpha() and encoded[:1].islower() else _KEY_MARK + encoded


def tag_key(label: str) -> str:
    return decode_label(label[len(_KEY_MARK):] if label.startswith(_KEY_MARK) else label)


def encode_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """GCE labels of our tags; a tag that cannot fit (63 characters once encoded) is an InvalidRequestError."""
    labels: dict[str, str] = {}
    for key, value in tags.items():
        k, v = label_key(str(key)), encode_label(str(value))
        if len(k) > 63 or len(v) > 63:
            raise InvalidRequestError(f"gce: the tag {key}={value} is too long for a GCE label (63 characters once "
                                      "encoded: lowercase letters, digits and '-' cost one, others more)")
        labels[k] = v
    if len(labels) > 64:
        raise InvalidRequestError(f"gce: {len(labels)} tags, GCE allows 64 labels per instance")
    return labels


def decode_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {tag_key(str(k)): decode_label(str(v)) for k, v in labels.items()}


def request_id(token: str, names: Sequence[str] = ()) -> str:
    """GCE's requestId must be a UUID: the same token (and names) always give the same one.

    The names are part of it so that a later create with the same token but other names (more instances for
    the same group) is a new request, not a replay of the first one.
    """
    return str(uuid.uuid5(TOKEN_NAMESPACE, token if not names else token + "\n" + "\n".join(names)))


def instance_name(name: str) -> str:
    """``name`` as a valid GCE instance name (``[a-z]([-a-z0-9]{0,61}[a-z0-9])?``); valid names are kept."""
    if NAME_RE.match(name):
        return name
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not fixed[:1].isalpha():
        fixed = "n-" + fixed
    if len(fixed) > 63 or fixed != name.lower():
        digest = hashlib.sha256(name.encode()).hexdigest()[:6]
        fixed = fixed[:63 - 7].rstrip("-") + "-" + digest
    return fixed
