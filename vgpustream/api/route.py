"""A route of the HTTP interface, declared once, in the module of its handler.

A Route says what the app routes (method, path, handler) and what the OpenAPI document says of it (summary,
request body, parameters, the statuses it answers with); vgpustream.api.routes gathers every module's into one
table, which create_app registers and vgpustream.api.openapi describes, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from msgspec import Struct

from vgpustream.api.schemas import schema_of

Json = dict[str, Any]
"""A piece of the OpenAPI document, as it is served."""
Security = list[dict[str, list[str]]]
"""An operation's OpenAPI security requirements: any one of them will do ([]: none needed)."""

TEXT: Json = {"type": "string"}
INT: Json = {"type": "integer"}
OPERATOR: Security = [{"operator": []}]
VIEWER: Security = [{"viewer": []}]
OPERATOR_OR_VIEWER: Security = [*OPERATOR, *VIEWER]
"""Routes that take a viewer token of the session as well as the operator's."""
ANYONE: Security = []
PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def json_body(struct: type[Struct]) -> Json:
    """A request body that is a JSON object of `struct` (vgpustream.api.schemas), which decodes it."""
    return {"required": True, "content": {"application/json": {"schema": schema_of(struct)}}}


def text_body(media: str, description: str) -> Json:
    """A request body of text in `media` (an SDP offer, a trickled fragment)."""
    return {"required": True, "content": {media: {"schema": {**TEXT, "description": description}}}}


@dataclass(frozen=True)
class Route:
    """One operation: its method and path, the handler that serves it, and what the document says of it."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    answers: Mapping[str, Json]
    """Every status it answers with (vgpustream.api.answers), each with its one-line description and body."""
    body: Json | None = None
    """Its request body: json_body or text_body."""
    parameters: tuple[Json, ...] = ()
    """Its query and header parameters; those of its path are its path's {names}."""
    path_descriptions: Mapping[str, str] = field(default_factory=dict)
    """What a parameter of its path is, where its name does not say."""
    security: Security | None = None
    """Who may call it; None: the operator (the document's default)."""
    description: str | None = None

    def operation(self) -> Json:
        """Its OpenAPI operation object."""
        operation: Json = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "responses": {**self.answers},
        }
        if self.parameters:
            operation["parameters"] = list(self.parameters)
        if self.body is not None:
            operation["requestBody"] = self.body
        if self.security is not None:
            operation["security"] = self.security
        if self.description is not None:
            operation["description"] = self.description
        operation["tags"] = [self.tag]
        return operation

    def path_parameters(self) -> list[Json]:
        """The parameters of its path: each {name} a string."""
        return [
            {"name": name, "in": "path", "required": True, "schema": TEXT}
            | ({"description": self.path_descriptions[name]} if name in self.path_descriptions else {})
            for name in PATH_PARAMETER.findall(self.path)
        ]


def register(app: web.Application, routes: Iterable[Route]) -> None:
    """Route each of `routes` to its handler; a GET answers HEAD too (aiohttp's add_get)."""
    for route in routes:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)


def paths(routes: Iterable[Route]) -> Json:
    """The OpenAPI paths object of `routes`: an item a path, with the parameters of the path and an operation a
    method."""
    items: dict[str, Json] = {}
    for route in routes:
        item = items.setdefault(route.path, {})
        if parameters := route.path_parameters():
            item["parameters"] = parameters
        item[route.method.lower()] = route.operation()
    return copy.deepcopy(items)  # the table's own pieces stay its own, whatever a caller changes in its document
