"""Pick free TCP ports on the loopback interface.

Base ports come from [15000, 22000) and every port stays below 32768, the
start of the kernel's ephemeral range, so an outgoing connection never takes
a port between allocation and bind. Some
services open extra ports at fixed offsets (SeaweedFS: each HTTP port N also
opens gRPC on N+10000), so a *block* can be requested.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable

LOW, HIGH = 15000, 22000
EPHEMERAL = 32768


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``port`` (checked on loopback and on all interfaces)."""
    for bind_host in (host, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((bind_host, port))
            except OSError:
                return False
    return True


def allocate_block(offsets: Iterable[int], *, taken: set[int], rng: random.Random | None = None) -> int:
    """A base port N such that N+offset is free (and not in ``taken``) for every offset."""
    offsets = sorted(set(offsets))
    rng = rng or random.Random()
    if LOW + offsets[-1] >= EPHEMERAL:
        raise ValueError(f"port offsets {offsets} do not fit below {EPHEMERAL}")
    for _ in range(500):
        base = rng.randrange(LOW, min(HIGH, EPHEMERAL - offsets[-1]))
        ports = [base + off for off in offsets]
        if all(p not in taken and is_free(p) for p in ports):
            taken.update(ports)
            return base
    raise RuntimeError(f"no free block of ports {offsets} in [{LOW}, {HIGH}) after 500 tries")


def allocate(taken: set[int], rng: random.Random | None = None) -> int:
    """One free port not in ``taken`` (which is updated)."""
    return allocate_block([0], taken=taken, rng=rng)
