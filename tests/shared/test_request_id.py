"""The request id a process makes, and the headers it sets on an answer."""

from __future__ import annotations

import os
import uuid

from shared.request_id import new_request_id, request_id_of, set_headers


def test_a_new_request_id_is_a_random_version_4_uuid_in_its_canonical_text() -> None:
    made = [new_request_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    for rid in made:
        parsed = uuid.UUID(rid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == rid


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    # Python reseeds its Mersenne Twister in a forked child (uvicorn's and our supervisor's workers).
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child != new_request_id()
    uuid.UUID(child)


def test_the_clients_id_is_kept_when_valid_and_replaced_when_not() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"headers": [(b"host", b"x"), *headers]}

    assert request_id_of(scope((b"x-request-id", b"trace-1.A_b"))) == "trace-1.A_b"
    for sent in (b"", b"has space", b"x" * 129):
        uuid.UUID(request_id_of(scope((b"x-request-id", sent))))
    uuid.UUID(request_id_of(scope()))


def test_set_headers_replaces_the_apps_header_of_the_same_name_and_keeps_the_rest() -> None:
    message = {"headers": [(b"content-type", b"application/json"), (b"x-request-id", b"app's")]}
    set_headers(message, (b"x-request-id", b"ours"), (b"x-content-type-options", b"nosniff"))
    assert message["headers"] == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"ours"),
        (b"x-content-type-options", b"nosniff"),
    ]
