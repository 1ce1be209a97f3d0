"""Every canvas route's success and failure paths: ownership, visibility, validation, mass assignment."""

from __future__ import annotations

import re
import uuid

import pytest
from httpx import AsyncClient

from tests.canvas.support import Caller, canvas_body
from tests.support.problems import assert_problem


async def test_create_returns_the_canvas_owned_by_the_caller(alice: Caller) -> None:
    resp = await alice.request(
        "POST",
        "/api/canvases",
        json={"title": "Hello", "type": "python", "code": "print(1)", "tags": ["a", "b", "a"]},
    )
    assert resp.status_code == 201
    body = resp.json()
    assert list(body) == [
        "id", "title", "type", "code", "description", "tags", "userId", "isPublic", "views", "createdAt",
        "updatedAt",
    ]  # fmt: skip
    assert uuid.UUID(body["id"])
    assert body["userId"] == alice.uid
    assert (body["isPublic"], body["views"], body["description"]) == (False, 0, "")
    assert body["tags"] == ["a", "b"]  # duplicates dropped, order kept
    assert body["createdAt"] == body["updatedAt"]
    assert body["createdAt"].endswith("Z")
    assert len(body["createdAt"].split(".")[1]) == 7

    read = await alice.get(body["id"])
    assert read.status_code == 200
    assert {**read.json(), "views": 0} == body


async def test_writes_need_a_user(anon: Caller, alice: Caller) -> None:
    canvas = await alice.create(isPublic=True)
    for method, path, body in [
        ("POST", "/api/canvases", canvas_body()),
        ("POST", "/api/canvases", {"title": ""}),  # 401 comes before validation
        ("PATCH", f"/api/canvases/{canvas['id']}", {"title": "x"}),
        ("DELETE", f"/api/canvases/{canvas['id']}", None),
        ("GET", "/api/users/me/canvases", None),
    ]:
        resp = await anon.request(method, path, json=body)
        assert_problem(resp, 401)
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_requests_without_a_valid_credential_are_401(client: AsyncClient, alice: Caller) -> None:
    canvas = await alice.create(isPublic=True)
    for headers in [{}, {"x-internal-auth": "v1.forged.mac"}, {"x-user-id": alice.uid}]:
        resp = await client.get(f"/api/canvases/{canvas['id']}", headers=headers)
        assert_problem(resp, 401)
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_private_canvas_is_404_to_everyone_but_its_owner(
    alice: Caller, bob: Caller, anon: Caller
) -> None:
    canvas = await alice.create()
    assert (await alice.get(canvas["id"])).status_code == 200
    for caller in (bob, anon):
        assert_problem(await caller.get(canvas["id"]), 404)
        assert (await caller.request("HEAD", f"/api/canvases/{canvas['id']}")).status_code == 404
    assert_problem(await bob.request("PATCH", f"/api/canvases/{canvas['id']}", json={"title": "mine"}), 404)
    assert_problem(await bob.request("DELETE", f"/api/canvases/{canvas['id']}"), 404)
    # Their failed reads counted nothing: the owner's next read is the second view.
    assert (await alice.get(canvas["id"])).json()["views"] == 2


async def test_public_canvas_is_readable_by_all_and_writable_by_its_owner_only(
    alice: Caller, bob: Caller, anon: Caller
) -> None:
    canvas = await alice.create(isPublic=True)
    assert (await anon.get(canvas["id"])).status_code == 200
    assert (await bob.get(canvas["id"])).status_code == 200
    assert_problem(await bob.request("PATCH", f"/api/canvases/{canvas['id']}", json={"title": "x"}), 403)
    assert_problem(await bob.request("DELETE", f"/api/canvases/{canvas['id']}"), 403)
    assert (await alice.get(canvas["id"])).json()["title"] == canvas["title"]


async def test_unknown_and_malformed_ids_are_404(alice: Caller, anon: Caller) -> None:
    for path in [f"/api/canvases/{uuid.uuid4()}", "/api/canvases/not-a-uuid", "/api/canvases/123"]:
        assert_problem(await alice.get(path.rsplit("/", 1)[1]), 404)
        assert_problem(await alice.request("PATCH", path, json={"title": "x"}), 404)
        assert_problem(await alice.request("DELETE", path), 404)
    assert_problem(await anon.request("PATCH", "/api/canvases/not-a-uuid", json={}), 404)  # routing first


async def test_wrong_method_is_405_with_allow(alice: Caller) -> None:
    resp = await alice.request("PUT", "/api/canvases")
    assert_problem(resp, 405)
    assert "POST" in resp.headers["allow"]


async def test_patch_changes_only_the_given_fields(alice: Caller) -> None:
    canvas = await alice.create(description="first", tags=["x"])
    resp = await alice.request(
        "PATCH",
        f"/api/canvases/{canvas['id']}",
        json={"title": "Renamed", "isPublic": True, "tags": ["b", "a", "b"], "code": ""},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["title"], body["isPublic"], body["tags"], body["code"]) == ("Renamed", True, ["b", "a"], "")
    assert (body["description"], body["type"], body["createdAt"]) == ("first", "python", canvas["createdAt"])
    assert body["updatedAt"] > canvas["updatedAt"]
    again = (await alice.get(canvas["id"])).json()
    assert {k: v for k, v in again.items() if k != "views"} == {k: v for k, v in body.items() if k != "views"}

    unchanged = await alice.request("PATCH", f"/api/canvases/{canvas['id']}", json={})
    assert unchanged.status_code == 200
    assert unchanged.json()["updatedAt"] == body["updatedAt"]


async def test_delete_removes_the_canvas(alice: Caller) -> None:
    canvas = await alice.create(isPublic=True, tags=["gone"])
    assert (await alice.request("DELETE", f"/api/canvases/{canvas['id']}")).status_code == 204
    assert_problem(await alice.get(canvas["id"]), 404)
    assert_problem(await alice.request("DELETE", f"/api/canvases/{canvas['id']}"), 404)
    listed = (await alice.request("GET", "/api/canvases", params={"tag": "gone", "userId": alice.uid})).json()
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"type": ""}, "type"),
        ({"type": "t" * 33}, "type"),
        ({"type": "Python"}, "type"),
        ({"type": "c++"}, "type"),
        ({"type": "p5\n"}, "type"),  # Python's `$` also matches before a final newline
        ({"type": "p5\x00"}, "type"),
        ({"title": "a\x00b"}, "title"),  # PostgreSQL's text cannot hold U+0000: refused on both engines
        ({"description": "\x00"}, "description"),
        ({"code": "print(1)\x00"}, "code"),
        ({"tags": ["ok", "a\x00"]}, "tags[1]"),
        ({"description": "d" * 2001}, "description"),
        ({"tags": [""]}, "tags[0]"),
        ({"tags": ["t" * 33]}, "tags[0]"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": "a"}, "tags"),
        ({"code": "é" * (512 * 1024 + 1)}, "code"),  # 1 MiB + 2 bytes in UTF-8, far fewer characters
        ({"title": None}, "title"),
        ({"isPublic": None}, "isPublic"),
        ({"isPublic": "true"}, "isPublic"),
        ({"title": 5}, "title"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"userId": str(uuid.uuid4())}, "userId"),
        ({"views": 100}, "views"),
        ({"createdAt": "2020-01-01T00:00:00.000000Z"}, "createdAt"),
        ({"updatedAt": "2020-01-01T00:00:00.000000Z"}, "updatedAt"),
        ({"owner": "someone"}, "owner"),
    ],
)
async def test_invalid_create_and_patch_bodies_are_422_naming_the_field(
    alice: Caller, fields: dict, field: str
) -> None:
    assert_problem(await alice.request("POST", "/api/canvases", json=canvas_body(**fields)), 422, field)
    canvas = await alice.create()
    assert_problem(await alice.request("PATCH", f"/api/canvases/{canvas['id']}", json=fields), 422, field)
    after = (await alice.get(canvas["id"])).json()
    assert {k: after[k] for k in ("title", "userId", "views", "createdAt")} == {
        "title": canvas["title"],
        "userId": alice.uid,
        "views": 1,
        "createdAt": canvas["createdAt"],
    }


async def test_missing_fields_are_422(alice: Caller) -> None:
    for missing in ("title", "type", "code"):
        body = canvas_body()
        del body[missing]
        assert_problem(await alice.request("POST", "/api/canvases", json=body), 422, missing)


async def test_limits_are_inclusive(alice: Caller) -> None:
    canvas = await alice.create(
        title="t" * 200,
        type="a-" * 15 + "z9",
        description="d" * 2000,
        tags=[f"{i:032d}" for i in range(20)],
        code="é" * (512 * 1024),  # exactly 1 MiB in UTF-8
    )
    assert len(canvas["code"]) == 512 * 1024
    assert (await alice.create(code=""))["code"] == ""


async def test_text_keeps_every_character_but_nul(alice: Caller) -> None:
    text = "line one\nline two\r\n\t\x01\x7f\u2028é😀\n"
    fields = {"title": text, "description": text, "code": text, "tags": [text[:32], "\n"]}
    canvas = await alice.create(**fields)
    assert {k: canvas[k] for k in fields} == fields
    assert {k: (await alice.get(canvas["id"])).json()[k] for k in fields} == fields


async def test_malformed_json_is_400_and_a_non_object_422(alice: Caller) -> None:
    resp = await alice.request(
        "POST", "/api/canvases", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(resp, 400)
    resp = await alice.request("POST", "/api/canvases", json=["a"])
    assert_problem(resp, 422)


async def test_body_over_2_mib_is_413(alice: Caller) -> None:
    resp = await alice.request("POST", "/api/canvases", json=canvas_body(code="x" * (2 * 1024 * 1024)))
    assert_problem(resp, 413)


async def test_head_reads_nothing_and_counts_nothing(alice: Caller, anon: Caller) -> None:
    canvas = await alice.create(isPublic=True)
    for _ in range(3):
        resp = await anon.request("HEAD", f"/api/canvases/{canvas['id']}")
        assert resp.status_code == 200
        assert resp.content == b""
    assert (await anon.get(canvas["id"])).json()["views"] == 1


async def test_openapi_documents_the_routes(client: AsyncClient) -> None:
    resp = await client.get("/schema/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert set(doc["paths"]) >= {"/api/canvases", "/api/canvases/{canvas_id}", "/api/users/me/canvases"}
    create = doc["components"]["schemas"]["CanvasCreate"]
    assert sorted(create["required"]) == ["code", "title", "type"]
    assert create["properties"]["title"]["maxLength"] == 200
    params = {p["name"] for p in doc["paths"]["/api/canvases"]["get"]["parameters"]}
    assert params == {"type", "tag", "userId", "q", "limit", "cursor"}
    q = next(p for p in doc["paths"]["/api/canvases"]["get"]["parameters"] if p["name"] == "q")
    assert (q["schema"]["minLength"], q["schema"]["maxLength"]) == (1, 200)
    one = doc["paths"]["/api/canvases/{canvas_id}"]
    for method, status in (("get", "200"), ("patch", "200"), ("head", "200")):
        assert "ETag" in one[method]["responses"][status]["headers"], method
    assert "ETag" in doc["paths"]["/api/canvases"]["post"]["responses"]["201"]["headers"]
    for method in ("patch", "delete"):
        assert "If-Match" in {p["name"] for p in one[method]["parameters"] if p["in"] == "header"}
        assert "412" in one[method]["responses"]


async def test_openapi_declares_what_the_service_enforces(client: AsyncClient) -> None:
    """Tag lengths, no U+0000 in text, and patterns that mean the same to the service (Python's
    re.search) as to the document's readers."""
    doc = (await client.get("/schema/openapi.json")).json()
    create, update = (
        doc["components"]["schemas"][name]["properties"] for name in ("CanvasCreate", "CanvasUpdate")
    )
    for tag in (create["tags"]["items"], update["tags"]["oneOf"][0]["items"]):
        assert (tag["minLength"], tag["maxLength"]) == (1, 32)
        assert not re.search(tag["pattern"], "a\x00")
    for name in ("title", "description", "code"):
        assert re.search(create[name]["pattern"], "a\nb\n")
        assert not re.search(create[name]["pattern"], "a\x00b")
        assert update[name]["pattern"] == create[name]["pattern"]
    query = {p["name"]: p["schema"] for p in doc["paths"]["/api/canvases"]["get"]["parameters"]}
    for kind in (create["type"]["pattern"], update["type"]["pattern"], query["type"]["pattern"]):
        assert re.search(kind, "p5-js")
        assert not re.search(kind, "p5\n")
    assert not re.search(query["tag"]["pattern"], "a\x00")


async def test_a_bad_type_is_explained_in_words_not_a_regex(alice: Caller) -> None:
    created = await alice.request("POST", "/api/canvases", json=canvas_body(type="Python 3"))
    listed = await alice.request("GET", "/api/canvases", params={"type": "Python 3"})
    for resp in (created, listed):
        assert resp.status_code == 422
        detail = resp.json()["detail"]
        assert "type" in detail
        assert "lowercase letters, digits and hyphens" in detail
        assert "regex" not in detail
        assert "(?" not in detail
