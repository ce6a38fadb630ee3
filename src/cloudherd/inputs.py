"""Whole numbers written by people and clients: ASCII digits only, and not too many of them.

``str.isdigit()`` is true of ``²`` and of a 5000-digit string, and ``int()`` of the first raises while the
second does not fit a database column: either was a 500.  Every face reads such numbers through here.

A group's size is bounded as well: ``scale =999999999`` on a group without ``max`` was stored, and the
manager set out to make that many machines.  :data:`GROUP_SIZE_LIMIT` is the spec's own bound of a group's
``count`` / ``min`` / ``max``; a server may set a lower one (``max_group_size`` in its server.yml).
"""

from __future__ import annotations

import re

INT64_DIGITS = 18  # any number of this many digits fits a signed 64-bit column
GROUP_SIZE_LIMIT = 10_000  # the most nodes a group may have (a spec's count, min and max are at most this)
# a lone surrogate: what JSON's "\ud800" and YAML's escape can write, and no UTF-8 (no file, no answer) carries
SURROGATE = re.compile("[\ud800-\udfff]")


def whole(text: str, digits: int = INT64_DIGITS) -> int | None:
    """``text`` as a whole number when it is 1 to ``digits`` ASCII digits; else None."""
    if not 0 < len(text) <= digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)
