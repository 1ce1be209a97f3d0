"""The gateway's app as a plain module attribute, for scenario 12's servers.

`gateway.app:app` is built on first access through the module's `__getattr__`; hypercorn
evaluates the attribute name in the module's namespace instead, which never calls it. Importing this
module (in the server's worker) builds the app from the environment, as the gateway's own entry
point does. Never import it in the benchmark's own process.
"""

from __future__ import annotations

from gateway.app import app

__all__ = ["app"]
