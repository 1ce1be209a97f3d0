"""The client's address as the gateway sees it (rate limiting, the credential's `ip`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from litestar.types import Scope


def client_ip(scope: Scope, trusted_proxies: Collection[str]) -> str:
    """The peer address; behind a trusted proxy, the last X-Forwarded-For hop it did not add itself."""
    state: dict[str, Any] = scope["state"]
    known = state.get("client_ip")
    if known is not None:
        return str(known)
    client = scope.get("client")
    peer = client[0] if client else "127.0.0.1"
    ip = peer
    if peer in trusted_proxies:
        forwarded = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for").decode("latin-1")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        ip = next((h for h in reversed(hops) if h not in trusted_proxies), peer)
    state["client_ip"] = ip
    return ip
