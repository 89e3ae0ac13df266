"""The API's bodies are declared once (vgpustream.api.schemas): the document's schemas are the Structs' own,
and a body the document rejects, the server rejects too."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vgpustream.api import schemas
from vgpustream.api.openapi import document
from vgpustream.api.requests import decode_json
from vgpustream.errors import VgpuStreamError

ROUTES = {
    schemas.SessionCreate: ("/api/v1/sessions", "post"),
    schemas.SessionUpdate: ("/api/v1/sessions/{id}", "patch"),
    schemas.TokenCreate: ("/api/v1/sessions/{id}/tokens", "post"),
    schemas.RecordingCreate: ("/api/v1/sessions/{id}/recordings", "post"),
}
DOCUMENT = document()


def request_schema(path: str, method: str) -> dict[str, Any]:
    return DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def test_every_json_request_body_is_a_request_struct():
    declared = {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert declared == set(ROUTES.values())
    assert set(ROUTES) == set(schemas.REQUESTS)


@pytest.mark.parametrize("struct", schemas.REQUESTS, ids=lambda struct: struct.__name__)
def test_the_document_declares_a_request_body_with_its_structs_own_schema(struct):
    assert request_schema(*ROUTES[struct]) == {"$ref": f"#/components/schemas/{struct.__name__}"}
    _, generated = msgspec.json.schema_components([struct], ref_template=schemas.SCHEMA_REF)
    components = DOCUMENT["components"]["schemas"]
    for name, schema in generated.items():
        assert {k: v for k, v in components[name].items() if k != "description"} == {
            k: v for k, v in schema.items() if k != "description"
        }
        assert " ".join(schema.get("description", "").split()) == components[name].get("description", "")


def document_validator(struct: type[msgspec.Struct]) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator of the document's schema for `struct`'s bodies (its refs resolved in it)."""
    root = {"$ref": f"#/components/schemas/{struct.__name__}", "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(root)


FIELDS = sorted(
    {field for struct in schemas.REQUESTS for field in struct.__struct_fields__}
    | set(schemas.Encoder.__struct_fields__)
    | set(schemas.Display.__struct_fields__)
)
TEXT = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), max_size=12) | st.sampled_from(
    ["vm-1", "synthetic:320x240@30", "view", "control", "read", "readwrite", "none", "a.b/c"]
)
NUMBERS = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from([0, 1, 63, 64, 120, 121, 3600, 86_400, 100_000, 10**8, 1024**2, 10**15])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.4, 0.5, 1.5, 60.0, 60.5])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS) | TEXT, inner, max_size=4),
    max_leaves=8,
)
BODIES = st.dictionaries(st.sampled_from(FIELDS) | TEXT, VALUES, max_size=5) | VALUES
VALID = {
    schemas.SessionCreate: {"id": "vm-1", "source": "synthetic:320x240@30"},
    schemas.SessionUpdate: {"display": {"width": 1280, "height": 720}},
    schemas.TokenCreate: {"role": "view"},
    schemas.RecordingCreate: {"label": "nightly"},
}
"""A body of each Struct that both accept, for changing one field of."""


def server_accepts(text: str, struct: type[msgspec.Struct]) -> bool:
    """What the handlers' own decoding (vgpustream.api.requests.read_json) says of a body."""
    try:
        decode_json(text, struct)
    except VgpuStreamError as exc:
        assert exc.code == "bad_request" and len(exc.message) < 300, exc.message
        return False
    return True


@pytest.mark.parametrize("struct", schemas.REQUESTS, ids=lambda struct: struct.__name__)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, change=st.none() | st.tuples(st.sampled_from(FIELDS) | TEXT, VALUES))
def test_a_body_the_document_rejects_the_server_rejects(struct, body, change):
    if change is not None:  # near the boundary: a valid body with one field set to anything
        body = {**VALID[struct], change[0]: change[1]}
    if not document_validator(struct).is_valid(body):
        assert not server_accepts(json.dumps(body), struct), body


@pytest.mark.parametrize(
    ("struct", "body"),
    [
        (schemas.SessionCreate, {"id": "vm-1", "source": "synthetic:320x240@30"}),
        (schemas.SessionCreate, {"id": "vm", "source": "s", "labels": {"team.a/b": "x"}, "encoder": {"fps": 5}}),
        (schemas.SessionUpdate, {}),
        (schemas.SessionUpdate, {"display": {"width": 1280, "height": 720, "scale": 1.5}, "max_viewers": 256}),
        (schemas.SessionUpdate, {"encoder": {"bitrate": 100_000, "keyframe_interval": 60}}),
        (schemas.TokenCreate, {"role": "control", "ttl_seconds": 1, "single_use": True, "clipboard": "readwrite"}),
        (schemas.RecordingCreate, {"label": "x" * 200, "max_seconds": 86_400, "max_bytes": 1024**2}),
    ],
)
def test_a_body_the_document_accepts_the_server_accepts(struct, body):
    assert document_validator(struct).is_valid(body)
    assert server_accepts(json.dumps(body), struct)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/sessions", {"id": "vm-1", "source": "synthetic:320x240@30", "max_viewers": 257}, "max_viewers"),
        ("/api/v1/sessions", {"id": "Vm", "source": "synthetic:320x240@30"}, "id"),
        ("/api/v1/sessions/default", {"labels": {"-bad": "x"}}, "labels"),
        ("/api/v1/sessions/default", {"encoder": {"keyframe_interval": 10**400}}, "keyframe_interval"),
        ("/api/v1/sessions/default", {"display": {"width": 1280}}, "height"),
        ("/api/v1/sessions/default/tokens", {"role": "admin" * 100}, "role"),
        ("/api/v1/sessions/default/tokens", {"x" * 1000: 1}, "unknown field"),
        ("/api/v1/sessions/default/recordings", {"max_seconds": 1.5}, "max_seconds"),
    ],
)
async def test_the_live_server_refuses_what_the_document_refuses(make_server, http, path, body, field):
    struct = {"/api/v1/sessions": schemas.SessionCreate, "/api/v1/sessions/default": schemas.SessionUpdate}.get(
        path, schemas.TokenCreate if path.endswith("tokens") else schemas.RecordingCreate
    )
    assert not document_validator(struct).is_valid(body)
    server = await make_server(source="synthetic:320x240@30")
    method = http.patch if path == "/api/v1/sessions/default" else http.post
    async with method(server.make_url(path), data=json.dumps(body), headers={"Content-Type": "application/json"}) as r:
        error = (await r.json())["error"]
        assert (r.status, error["code"]) == (400, "bad_request"), error
    assert field in error["message"] and len(error["message"]) < 300, error["message"]
