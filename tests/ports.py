"""A free local TCP port for a server a test starts (the app, PostgreSQL, torch.distributed's rendezvous):
tests run in parallel workers, so no port is fixed."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
