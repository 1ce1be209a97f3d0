"""`python -m shared.serve`: uvicorn's command line, every option the same, with one change to its
supervisor of several workers (`--workers` > 1): when it stops, it closes its own copy of the
listening socket first.

uvicorn's supervisor binds the socket, hands it to its workers and keeps its own copy open until
the last worker has exited. On SIGTERM each worker stops accepting and drains its connections
(shared/server.py), but the socket stays in the LISTEN state through the supervisor's copy: the
kernel keeps completing new connections into its backlog, which no one accepts, and resets them
all when the supervisor exits, seconds later. A client that connected in that time (the gateway,
opening a connection to a replica being stopped) had its request swallowed and then reset: 2 of
~7,000 calls to the auth service got 502 when one auth replica was stopped under load. With the
supervisor's copy closed, the socket stops listening as soon as the workers have closed theirs (at
the start of their graceful stop): a new connection is refused at once, and the gateway's connect
goes on to another replica's address (asyncio tries each address the name resolves to).

Only the supervisor's stop closes it: a worker restarted by the supervisor (after a crash, or
uvicorn's rolling restart on SIGHUP) still gets the open socket. Hand-written because uvicorn has no
setting for it; the subclass changes only `Multiprocess.terminate_all`, which uvicorn calls once,
when the supervisor stops.
"""

from __future__ import annotations

import importlib
from typing import Any

from uvicorn.supervisors import Multiprocess

# The module uvicorn.main (the package's own `main` attribute is the command-line function).
_cli: Any = importlib.import_module("uvicorn.main")


class Supervisor(Multiprocess):
    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()  # the supervisor's copy; each worker closes its own as it stops
        super().terminate_all()


_cli.Multiprocess = Supervisor  # what uvicorn.main.run starts

if __name__ == "__main__":
    _cli.main()
