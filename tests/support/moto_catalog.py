"""What moto's own catalog ships, read at run time (never copied into a test: moto's data changes with its
releases, and a test that pins moto's AMI ids breaks on a new moto though cloudherd is right)."""

from __future__ import annotations

import fnmatch
import gzip
import json
from functools import cache
from importlib import resources
from typing import Any

# Amazon Linux 2023 as EC2's name filter finds it (the minimal images are named al2023-ami-minimal-…)
AL2023 = "al2023-ami-2023.*-{arch}"


@cache
def latest_amis(region: str = "us-east-1") -> tuple[dict[str, Any], ...]:
    """The public images moto serves in ``region`` (its ``latest_amis`` file, compressed or not)."""
    folder = resources.files("moto") / "ec2" / "resources" / "latest_amis"
    packed, plain = folder / f"{region}.json.gz", folder / f"{region}.json"
    raw = gzip.decompress(packed.read_bytes()) if packed.is_file() else plain.read_bytes()
    return tuple(json.loads(raw))


def al2023_ids(arch: str = "x86_64", region: str = "us-east-1") -> set[str]:
    """Every Amazon Linux 2023 image id of ``arch`` that moto serves in ``region``."""
    found = {a["ami_id"] for a in latest_amis(region) if fnmatch.fnmatchcase(a["name"], AL2023.format(arch=arch))}
    assert found, f"moto serves no Amazon Linux 2023 {arch} image in {region}: its catalog changed shape"
    return found


def an_image(region: str = "us-east-1") -> str:
    """One x86_64 image id that moto serves (for tests that need an image, any image)."""
    return min(al2023_ids("x86_64", region))
