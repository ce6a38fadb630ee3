"""OGC's ``models.User``: the user record OGC's documentation makes before anything else."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    name: str

    @property
    def slug(self) -> str:
        """OGC's slug of the name (its key, and the ``user-<slug>`` tag it put on nodes)."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
