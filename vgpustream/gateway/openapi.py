"""The gateway's OpenAPI 3.1 description, served at /api/v1/openapi.json as a host serves its own.

It is the host's document (vgpustream.api.openapi) as the gateway changes it, so that the two cannot drift
apart: sessions gain their `node` (and the state `unreachable` in the cluster's list), a session is created
on the node its body names, every call about a session takes `?node=` and may answer what the search for its
host or the host itself can (409: the id is on more than one node; 502: a host that gave no valid answer;
503 with Retry-After: a host that does not answer), and what the gateway does not serve (a host's metrics)
is left out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from vgpustream.api import openapi, schemas
from vgpustream.api.answers import ERRORS, LIMITED, MALFORMED, RETRY_AFTER, error_answer, json_answer
from vgpustream.api.route import TEXT
from vgpustream.api.schemas import schema_of
from vgpustream.gateway.hosts import RETRY_AFTER as RETRY_SECONDS
from vgpustream.gateway.hosts import ROUTE
from vgpustream.gateway.schemas import NodeSession, NodeSessionCreate, NodeSessionList
from vgpustream.settings import NODE_NAME

PATH = openapi.PATH
"""Where the gateway serves its document: where a host serves its own."""
NODE = {
    "name": ROUTE,
    "in": "query",
    "required": False,
    "schema": {**TEXT, "pattern": f"^{NODE_NAME.pattern}$"},
    "description": "The node (host) of the session, where its id alone does not say (every host has a session "
    "'default'); without it the gateway asks every host",
}
NOT_SERVED = {"/metrics"}
"""What a host serves and the gateway does not: each host has its own metrics."""
CONFLICT = "The session's id is on more than one node (or may be, on one that does not answer): name it with ?node="
BAD_GATEWAY = (
    "The session's host gave no valid answer: no HTTP, a body that breaks off or is not what a host sends, or a "
    "5xx other than 503"
)
UNAVAILABLE = (
    f"The session's host (or one that may hold it) does not answer: try again after Retry-After ({RETRY_SECONDS} s)"
)


def _also(responses: dict[str, Any], status: str, description: str, **extra: Any) -> None:
    """`responses` with `status` answered for `description` too (besides what it answers it for already)."""
    if status in responses:
        answered = responses[status]
        responses[status] = {**answered, "description": f"{answered['description']}; or: {description}", **extra}
    else:
        responses[status] = {**error_answer(description), **extra}


def _reaching_a_host(responses: dict[str, Any]) -> None:
    """What an operation the gateway relays to a node's host answers besides the host's own answers."""
    _also(responses, "404", "No node of that name (?node=), or no node has the session")
    _also(responses, "502", BAD_GATEWAY)
    _also(responses, "503", UNAVAILABLE, headers=RETRY_AFTER)


def _routed(operation: dict[str, Any], *, searched_by: str) -> None:
    """An operation about a session, relayed to the node `?node=` names or a search finds: the search's answers
    too (409; 429 for a search without a token, which `searched_by` says: "operator", "viewer")."""
    operation["parameters"] = [*operation.get("parameters", []), NODE]
    _also(operation["responses"], "409", CONFLICT)
    if searched_by == "viewer" and "429" not in operation["responses"]:
        operation["responses"] |= LIMITED
    _reaching_a_host(operation["responses"])


def _operations(paths: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in paths.items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def _references(value: Any) -> Iterator[str]:
    """The names of the components/schemas that `value` refers to."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"].rsplit("/", 1)[-1]
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _used(components: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """The components that `paths` use, directly or through other components."""
    used: set[str] = set()
    pending = list(_references(paths))
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            pending += _references(components[name])
    return {name: schema for name, schema in components.items() if name in used}


def document() -> dict[str, Any]:
    """The gateway's document: the host's, as the gateway serves it."""
    doc = copy.deepcopy(openapi.document())
    paths = {path: item for path, item in doc["paths"].items() if path not in NOT_SERVED}
    for path, _, operation in _operations(paths):
        if path.startswith(("/api/v1/sessions/{id}", "/whep/")):
            _routed(operation, searched_by="viewer" if path.startswith("/whep/") else "operator")
    sessions = paths["/api/v1/sessions"]
    sessions["get"]["summary"] = (
        "List the sessions of every node (one node's with ?node=), optionally by label; a node that does not answer "
        "has the sessions it last listed, state `unreachable`, and its state in `nodes`"
    )
    sessions["get"]["parameters"].append(NODE)
    sessions["get"]["responses"]["200"] = json_answer(NodeSessionList, "The sessions, each with its node")
    sessions["get"]["responses"]["404"] = error_answer("No node of that name (?node=)")
    create = sessions["post"]
    create["summary"] = "Create a session on the node the body names (the control plane knows where its VM runs)"
    create["requestBody"]["content"]["application/json"]["schema"] = schema_of(NodeSessionCreate)
    create["responses"]["201"] = json_answer(NodeSession, "Created, on that node; Location names it with ?node=")
    _reaching_a_host(create["responses"])
    session = paths["/api/v1/sessions/{id}"]
    session["get"]["responses"]["200"] = json_answer(NodeSession, "The session, with its node")
    session["patch"]["responses"]["200"] = json_answer(NodeSession, "Updated")
    events = paths["/api/v1/events"]["get"]
    events["summary"] = "The audit trail of one node (?node=), or of a session's node (?session=); `next` keeps it"
    _routed(events, searched_by="operator")
    events["responses"]["400"] = {**ERRORS["400"], "description": "Invalid request, or neither ?node= nor ?session="}
    revoke = paths["/api/v1/sessions/{id}/tokens/{token}"]["delete"]
    revoke["description"] = (
        "Done (204) once the token's host has the revocation; while that host does not answer, 503 with Retry-After "
        "(the gateway keeps no pending revocations): try again. A second revocation is 204 again."
    )
    download = paths["/api/v1/sessions/{id}/recordings/{recording}/file"]["get"]
    download["description"] = "A signed `file_link` is relayed without a token (its host checks it) and needs ?node="
    readiness = paths["/readyz"]["get"]
    readiness["summary"] = "Readiness: a gateway that serves is ready (it keeps nothing that could be not ready)"
    readiness["responses"] = {"200": json_answer(schemas.Readiness, "Ready"), **MALFORMED}
    readiness["security"] = [{}]
    doc["paths"] = paths
    doc["info"] |= {
        "title": "vgpustream gateway",
        "description": "One endpoint for a cluster of vgpustream hosts: the control plane's /api/v1 for every "
        "host's sessions, and viewers' WHEP and WebSocket signalling relayed to the session's host.",
    }
    doc["servers"] = [{"url": "/", "description": "The gateway that serves this document"}]
    doc["components"]["schemas"] = _used(schemas.components(NodeSessionList, NodeSessionCreate), paths)
    return doc


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, serve_document)
