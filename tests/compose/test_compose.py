"""docker-compose.yml as an operator runs it (`make test-compose`): the README's operations section,
step by step, on one Compose project, driven through the published port.

One Compose project for the module (built and started once: that takes minutes), its steps in file
order: build and `up -d`, a client flow, the cascade, `--scale canvas=3 --scale auth=2`, `restart
redis`, `restart postgres`, `kill` of a canvas replica under reads, `stop` of a canvas and an auth
replica under traffic, `down` + `up` with the data kept,
a backup and its restore, JSON logs, and `down -v` at the end (the fixture's teardown, which also
runs when a step fails). No step relies on what an earlier step left behind: each creates its own
accounts and canvases, and each one that needs replicas asks for them (`scaled`) and waits until
every one of them is healthy, so a step that failed leaves nothing the next one trips over.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.compose.support import Compose, http, scraped_reads, wait_for

pytestmark = [pytest.mark.compose, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
CANVAS = {"title": "Hello", "type": "python", "code": "print(42)", "tags": ["compose"], "isPublic": True}
SCALED = {"canvas": 3, "auth": 2}


@pytest.fixture(scope="module")
def system() -> Iterator[Compose]:
    compose = Compose()
    compose.build()
    try:
        compose("up", "-d")
        compose.wait_healthy()
        yield compose
    finally:
        try:
            compose("down", "-v", "--remove-orphans")
            assert compose.volumes() == [], "down -v left volumes behind"
        finally:
            compose.docker("rmi", compose.image)
            compose.close()


def signup(system: Compose) -> tuple[str, str]:
    email = f"op-{secrets.token_hex(6)}@example.com"
    status, body = http(
        system, "POST", "/api/auth/signup", {"email": email, "password": PASSWORD, "name": "Op"}
    )
    assert status == 201, body
    return email, body["token"]


def create(system: Compose, token: str, **fields: Any) -> dict[str, Any]:
    status, body = http(system, "POST", "/api/canvases", {**CANVAS, **fields}, token)
    assert status == 201, body
    return body


def scaled(system: Compose) -> list[str]:
    """The README's `up -d --scale canvas=3 --scale auth=2`, every replica healthy; the canvas
    replicas' containers. The same command starts a killed replica again (Compose then waits for it
    to be healthy before it checks the gateway's dependencies)."""
    system("up", "-d", "--scale", "canvas=3", "--scale", "auth=2")
    system.wait_healthy(SCALED)
    return system.containers("canvas")


def account(system: Compose) -> tuple[str, str, str]:
    """A new user, logged in, with one public canvas: (email, token, canvas id)."""
    email, token = signup(system)
    return email, token, create(system, token)["id"]


def views(system: Compose, canvas_id: str) -> int:
    """The canvas's views before this read (the read counts itself)."""
    status, body = http(system, "GET", f"/api/canvases/{canvas_id}")
    assert status == 200, body
    return int(body["views"]) - 1


def traffic(system: Compose, email: str, token: str, canvas_id: str, rounds: int) -> Counter[str]:
    """Logins, reads and writes, 4 at a time (so several pooled connections are in use, and no more
    password requests in flight than GATEWAY_PASSWORD_CLIENT_IN_FLIGHT allows); the statuses seen,
    per kind."""

    def login(_: int) -> str:
        return f"login {http(system, 'POST', '/api/auth/login', {'email': email, 'password': PASSWORD})[0]}"

    def read(_: int) -> str:
        return f"read {http(system, 'GET', f'/api/canvases/{canvas_id}')[0]}"

    def write(i: int) -> str:
        return f"write {http(system, 'POST', '/api/canvases', {**CANVAS, 'title': f'w{i}'}, token)[0]}"

    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(kind, i) for i in range(rounds) for kind in (login, read, write)]
        return Counter(call.result() for call in calls)


def test_up_serves_the_client_flow(system: Compose) -> None:
    email, token = signup(system)
    status, body = http(system, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    canvas = create(system, token)
    assert views(system, canvas["id"]) == 0
    status, page = http(system, "GET", "/api/canvases?tag=compose&limit=10")
    assert status == 200
    assert canvas["id"] in [c["id"] for c in page["items"]]
    status, me = http(system, "GET", "/api/users/me", token=token)
    assert (status, me["email"]) == (200, email)
    assert http(system, "POST", "/api/auth/logout", token=token)[0] == 204
    assert http(system, "GET", "/api/users/me", token=token)[0] == 401
    status, body = http(system, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200
    assert http(system, "GET", "/api/users/me", token=body["token"])[0] == 200


def test_account_deletion_cascades(system: Compose) -> None:
    cascade(system)


def cascade(system: Compose) -> list[str]:
    """A user with three canvases deletes the account: the canvases go (through the event stream);
    the ids of the deleted canvases."""
    _, token = signup(system)
    owned = [create(system, token, title=f"doomed {i}")["id"] for i in range(3)]
    assert http(system, "DELETE", "/api/users/me", {"password": PASSWORD}, token)[0] == 204
    assert http(system, "GET", "/api/users/me", token=token)[0] == 401

    def gone() -> bool:
        return all(http(system, "GET", f"/api/canvases/{c}")[0] == 404 for c in owned)

    wait_for("the deleted user's canvases gone", gone, timeout=30, every=0.5)
    return owned


def test_scaled_replicas_share_reads_and_views_stay_exact(system: Compose) -> None:
    replicas = scaled(system)
    _, _, canvas_id = account(system)
    before_views = views(system, canvas_id)
    before = {c: scraped_reads(system, c) for c in replicas}
    answered: list[int] = []
    served: dict[str, int] = {}
    lock = threading.Lock()

    def read_batch() -> bool:
        # The gateway resolves the service name again every 10 s (Docker's DNS answers every replica,
        # in turn first) and closes a connection idle for 4 s: a pause longer than that between
        # batches lets the next batch open new connections to the replica resolved first.
        time.sleep(5)
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: http(system, "GET", f"/api/canvases/{canvas_id}"), range(30)))
        assert all(status == 200 for status, _ in results), Counter(s for s, _ in results)
        with lock:
            answered.extend(body["views"] for _, body in results)
        served.update({c[:12]: scraped_reads(system, c) - before[c] for c in replicas})
        return all(n > 0 for n in served.values())

    wait_for("reads spread over 3 canvas replicas", read_batch, timeout=180, every=0, detail=lambda: served)
    # Every read is counted once by the replica that served it: the replicas' /metrics (each adding
    # up its two workers) account for exactly the reads made, one answer per view count. (Litestar's
    # middleware counts a request once its response is sent: the last count may land just after the
    # client saw the answer, hence a short wait for the exact sum.)
    after: dict[str, int] = {}

    def all_counted() -> bool:
        after.update({c: scraped_reads(system, c) for c in replicas})
        return sum(after[c] - before[c] for c in replicas) == len(answered)

    wait_for("every answered read counted", all_counted, timeout=30, detail=lambda: (after, len(answered)))
    # The metrics add up both workers: two scrapes in a row with no request between agree.
    assert [scraped_reads(system, c) for c in replicas] == list(after.values())
    assert sorted(answered) == list(range(before_views + 2, before_views + 2 + len(answered)))
    assert views(system, canvas_id) == before_views + 1 + len(answered)


@pytest.mark.parametrize("service", ["redis", "postgres"])
def test_restart_of_a_dependency_costs_no_request_afterwards(system: Compose, service: str) -> None:
    scaled(system)
    email, token, canvas_id = account(system)
    warm = traffic(system, email, token, canvas_id, rounds=8)  # pooled connections to every replica
    assert set(warm) == {"login 200", "read 200", "write 201"}, warm
    system("restart", service)
    system.wait_healthy(SCALED, timeout=180)
    before = views(system, canvas_id)
    after = traffic(system, email, token, canvas_id, rounds=16)
    assert after == Counter({"login 200": 16, "read 200": 16, "write 201": 16}), after
    assert views(system, canvas_id) == before + 1 + 16


def test_killing_a_canvas_replica_under_reads_loses_no_write_and_no_view(system: Compose) -> None:
    victim = scaled(system)[0]
    _, token = signup(system)
    hot = create(system, token, title="hot")["id"]
    reads: Counter[int] = Counter()
    read_views: list[int] = []
    written: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            status, body = http(system, "GET", f"/api/canvases/{hot}")
            with lock:
                reads[status] += 1
                if status == 200:
                    read_views.append(body["views"])

    def writer() -> None:
        while not stop.is_set():
            status, body = http(system, "POST", "/api/canvases", {**CANVAS, "title": "under fire"}, token)
            if status == 201:
                with lock:
                    written.append(body["id"])

    threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        wait_for("reads before the kill", lambda: reads[200] >= 40, timeout=60, every=0.2)
        system.docker("kill", victim)
        killed_at = reads[200]
        # The surviving replicas keep serving: reads succeed again after the kill.
        wait_for("reads after the kill", lambda: reads[200] >= killed_at + 80, timeout=90, every=0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    failed = sum(n for status, n in reads.items() if status != 200)
    # Every acknowledged write is there.
    missing = [c for c in written if http(system, "GET", f"/api/canvases/{c}", token=token)[0] != 200]
    assert written
    assert not missing, f"{len(missing)} of {len(written)} acknowledged writes lost"
    # Every answered read was counted exactly once; a read cut off by the kill at most once.
    assert len(set(read_views)) == len(read_views), "two reads answered with the same count"
    counted = views(system, hot)
    assert reads[200] <= counted <= reads[200] + failed, (counted, reads)
    # The killed replica comes back (Docker's restart policy, or `up` as an operator would run it)
    # and serves again: all three healthy, and reads still exact.
    scaled(system)
    assert system.health(victim) == "healthy"
    assert views(system, hot) == counted + 1


def test_stopping_replicas_under_traffic_fails_no_request(system: Compose) -> None:
    """`docker stop` (SIGTERM, as `compose stop`, a scale-down or a rolling update sends it) of a canvas
    replica and an auth replica while reads, writes and `/api/users/me` run: not one request fails,
    every read is counted once. A stopping replica answers on the connections the gateway holds and
    refuses new ones at once (shared/server.py, shared/serve.py); before, its idle connections were
    closed under requests just written on them and new ones were swallowed: 502s."""
    canvas_victim = scaled(system)[0]
    auth_victim = system.containers("auth")[0]
    _, token = signup(system)
    hot = create(system, token, title="stopped under traffic")["id"]
    seen: Counter[str] = Counter()
    written: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def loop(kind: str, call: Any) -> None:
        while not stop.is_set():
            status, body = call()
            with lock:
                seen[f"{kind} {status}"] += 1
                if kind == "write" and status == 201:
                    written.append(body["id"])

    calls = {
        "read": lambda: http(system, "GET", f"/api/canvases/{hot}"),
        "me": lambda: http(system, "GET", "/api/users/me", token=token),
        "write": lambda: http(system, "POST", "/api/canvases", {**CANVAS, "title": "rolled"}, token),
    }
    kinds = ["read"] * 4 + ["me"] * 2 + ["write"]
    threads = [threading.Thread(target=loop, args=(kind, calls[kind])) for kind in kinds]
    for thread in threads:
        thread.start()
    try:
        wait_for("traffic before the stops", lambda: seen["read 200"] >= 40, timeout=60, every=0.2)
        system.docker("stop", canvas_victim)  # returns once it has exited (graceful: within 30 s)
        system.docker("stop", auth_victim)
        stopped_at = seen["read 200"]
        wait_for("reads after the stops", lambda: seen["read 200"] >= stopped_at + 80, timeout=90, every=0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert set(seen) == {"read 200", "me 200", "write 201"}, seen
    assert views(system, hot) == seen["read 200"]
    assert all(http(system, "GET", f"/api/canvases/{c}", token=token)[0] == 200 for c in written)
    scaled(system)  # both come back, healthy
    assert system.health(canvas_victim) == system.health(auth_victim) == "healthy"


def test_down_and_up_keep_the_data(system: Compose) -> None:
    email, token, hot = account(system)
    for _ in range(5):
        views(system, hot)
    written = [create(system, token, title=f"kept {i}")["id"] for i in range(5)]
    deleted = cascade(system)
    system("down")
    system("up", "-d")
    system.wait_healthy()
    assert http(system, "GET", "/api/users/me", token=token)[0] == 200  # sessions kept
    status, _ = http(system, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200
    assert views(system, hot) == 5  # views flushed before the stop, kept
    assert all(http(system, "GET", f"/api/canvases/{c}", token=token)[0] == 404 for c in deleted)
    assert all(http(system, "GET", f"/api/canvases/{c}")[0] == 200 for c in written)
    # The event stream and its consumer group came back with Redis: a cascade still flows.
    cascade(system)


def test_a_backup_restores_what_it_holds(system: Compose) -> None:
    email, token, kept = account(system)  # never read before the dump: 0 views in it
    written = [create(system, token, title=f"backed up {i}")["id"] for i in range(3)]
    # The README's backup and restore commands, as written there.
    dumps = {
        db: system.pipe("exec", "-T", "postgres", "pg_dump", "-U", "canvasverse", "-Fc", db)
        for db in ("auth", "canvas")
    }
    later_email, later_token = signup(system)
    later = create(system, later_token, title="after the backup")["id"]
    for _ in range(3):
        views(system, kept)  # views after the backup: buffered in Redis or flushed, gone either way
    system("stop", "gateway", "auth", "relay", "canvas")
    for db, dump in dumps.items():
        system.pipe(
            "exec",
            "-T",
            "postgres",
            "pg_restore",
            "-U",
            "canvasverse",
            "-d",
            db,
            "--clean",
            "--if-exists",
            data=dump,
        )
    system("exec", "-T", "redis", "redis-cli", "FLUSHALL")
    system("up", "-d")
    system.wait_healthy()
    # What was written after the backup is gone, what it held is back, exactly.
    assert http(system, "GET", f"/api/canvases/{later}")[0] == 404
    assert http(system, "GET", "/api/users/me", token=later_token)[0] == 401
    status, _ = http(system, "POST", "/api/auth/login", {"email": later_email, "password": PASSWORD})
    assert status == 401
    assert http(system, "GET", "/api/users/me", token=token)[0] == 200
    status, _ = http(system, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200
    assert views(system, kept) == 0
    assert all(http(system, "GET", f"/api/canvases/{c}")[0] == 200 for c in written)
    # The consumer group was created again on start: a cascade still flows after Redis was emptied.
    cascade(system)


def test_every_line_of_our_processes_is_json(system: Compose) -> None:
    """Every line every app container wrote (stdout and stderr, `docker logs` of each container of
    the service, the exited migration job's too) is a JSON object: the services', uvicorn's own and
    the migration job's progress."""
    for service in ("migrate", "auth", "relay", "canvas", "gateway"):
        lines = system.logs(service)
        assert lines, f"{service} logged nothing:\n{system.everything()}"
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            assert isinstance(record, dict), f"{service}: not a JSON object: {line}"
