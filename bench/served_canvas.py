"""The canvas service's app as a plain module attribute, for scenario 12's servers.

`services.canvas.app:app` is built on first access through the module's `__getattr__`; hypercorn
evaluates the attribute name in the module's namespace instead, which never calls it. Importing this
module (in the server's worker) builds the app from the environment, as the service's own entry
point does. Never import it in the benchmark's own process.
"""

from __future__ import annotations

from services.canvas.app import app

__all__ = ["app"]
