"""Asking a node for its host key without logging in: for faces that hand the login to another client.

``cloudherd ssh`` runs OpenSSH, whose refusal of a changed key is a 15-line banner and whose
known-hosts logic knows nothing of our pins.  Probing first lets cloudherd refuse in its own words,
with the pinned and the presented fingerprints, and re-pin on request, before OpenSSH is started.
"""

from __future__ import annotations

import asyncio

import asyncssh

from cloudherd.errors import DeployError


async def presented_host_key(address: str, port: int, algorithm: str | None, timeout: float = 15.0) -> str | None:
    """The host key (OpenSSH public-key line) the node offers for ``algorithm``; None if it offers none."""
    algorithms: list[str] = []
    if algorithm == "ssh-rsa":  # an RSA key is offered under its signature algorithms
        algorithms = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    elif algorithm:
        algorithms = [algorithm]
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(address, port, server_host_key_algs=algorithms or ()), timeout)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise DeployError(f"{address}:{port} did not answer SSH: {exc or exc.__class__.__name__}") from None
    return key.export_public_key("openssh").decode().strip() if key is not None else None


def key_algorithm(public_key: str) -> str | None:
    """The algorithm named by an OpenSSH public-key line (``ssh-ed25519 AAAA…`` → ``ssh-ed25519``)."""
    return public_key.split()[0] if public_key.strip() else None
