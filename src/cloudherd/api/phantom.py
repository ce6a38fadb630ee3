"""Phantom's domains, on the Auto Scaling API: a group carrying Phantom's definition tag follows Phantom's
rules, every other group AWS's.

Why: Phantom's users script it with boto through the AWS protocol, and its published scripts rely on what
Phantom did where AWS does otherwise.  ``asg_create.py`` makes a domain with ``min = max = n`` and the tags
``PHANTOM_DEFINITION=error_overflow_n_preserving``, ``clouds=hotel:1,sierra:2``, ``minimum_vms=n``;
``asg_alter.py`` changes the n-preserving value with SetDesiredCapacity (AWS would refuse it, outside
min/max: the value could never change); ``asg_delete.py`` deletes without ForceDelete while the domain
runs (AWS refuses: the domain could never go); ``asg_list.py`` shows the domain's launch configuration by
the name its sites share (``testlc1``, not ``testlc1@hotel``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DEFINITION_TAG = "PHANTOM_DEFINITION"
MINIMUM_TAG = "minimum_vms"  # the n-preserving value, kept equal to the domain's size
N_PRESERVING = "error_overflow_n_preserving"  # the definition cloudherd runs


def definition_problem(value: str) -> str | None:
    """Why a ``PHANTOM_DEFINITION`` value cannot be honoured (None: it can).  Phantom's ``sensor_engine``
    scales on a sensor's metric (``sensor_asg_create.py``): kept at its size here it would silently not
    scale, so it is refused until metric policies exist."""
    if value == N_PRESERVING:
        return None
    if value == "sensor_engine":
        return (f"{DEFINITION_TAG} sensor_engine (scaling on a sensor's metric) is not run by this server: a "
                f"domain keeps the size it is given ({DEFINITION_TAG} {N_PRESERVING})")
    return f"{DEFINITION_TAG} {value} is not a definition this server runs (it runs {N_PRESERVING})"


def is_domain(tags: Iterable[Mapping[str, object] | object]) -> bool:
    """Whether a group's tags (rows as stored, or Tag values) carry Phantom's definition."""
    for tag in tags:
        key = tag.get("key") if isinstance(tag, Mapping) else getattr(tag, "key", None)
        if key == DEFINITION_TAG:
            return True
    return False


def with_minimum(tags: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """A domain's stored tags with its ``minimum_vms`` at ``size`` (one write with the size: a manager pass
    between two writes would clamp the new size to the old bounds)."""
    kept = [t for t in tags if t.get("key") != MINIMUM_TAG]
    return [*kept, {"key": MINIMUM_TAG, "value": str(size), "propagate": False}]


def shared_name(launch_configuration: str) -> str:
    """The name a domain's launch configurations share across sites: ``testlc1`` for ``testlc1@hotel``."""
    return launch_configuration.split("@", 1)[0]
