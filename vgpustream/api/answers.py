"""The answers of the HTTP interface as its routes declare them (vgpustream.api.route), and those many share:
the errors that vgpustream.api.errors maps the typed exceptions to, with their headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct

from vgpustream.api import schemas
from vgpustream.api.route import INT, TEXT, Json
from vgpustream.api.schemas import schema_of


def json_answer(struct: type[Struct], description: str, **extra: Any) -> Json:
    """A JSON response whose body is a `struct` (vgpustream.api.schemas); `extra`: its headers, say."""
    return {"description": description, "content": {"application/json": {"schema": schema_of(struct)}}, **extra}


def error_answer(description: str, **extra: Any) -> Json:
    """An error response (vgpustream.api.schemas.Error)."""
    return json_answer(schemas.Error, description, **extra)


def _challenge(description: str, required: bool) -> Json:
    return {"WWW-Authenticate": {"description": description, "required": required, "schema": TEXT}}


RETRY_AFTER = {"Retry-After": {"description": "Seconds after which to try again", "schema": INT}}
ERRORS = {
    "400": error_answer("Invalid request"),
    "401": error_answer("No credentials", headers=_challenge("`Bearer` (RFC 9110, RFC 6750)", required=True)),
    "403": error_answer(
        "Credentials that do not allow this",
        headers=_challenge(
            'RFC 6750: `Bearer error="invalid_token"`, `"insufficient_scope"` or `"invalid_request"`', required=False
        ),
    ),
    "404": error_answer("No such resource"),
    "413": error_answer("Body too large"),
    "415": error_answer("Wrong Content-Type"),
}
"""What any request can be answered: refused before its handler does anything."""
LIMITED = {"429": error_answer("Too many requests; see Retry-After", headers=RETRY_AFTER)}
FULL = {"503": error_answer("No room; see Retry-After", headers=RETRY_AFTER)}
STORED = {
    "503": error_answer(
        "The state database cannot be written now (storage_unavailable); nothing changed", headers=RETRY_AFTER
    ),
    "507": error_answer("The state directory's disk is full (storage_full); nothing changed"),
}
"""A change the state database must keep: refused whole when it cannot be stored."""
NO_CONTENT = {"204": {"description": "Done"}}
MALFORMED = {"400": error_answer("A malformed HTTP request, refused by the HTTP parser before any handler")}
"""What a route that takes nothing can still be answered."""


def stored_change(done: Mapping[str, Json], conflict: str, unavailable: str) -> dict[str, Json]:
    """The answers to a change the state database keeps: `done`, the usual errors, 409 and 503 as said."""
    return {**done, **ERRORS, "409": error_answer(conflict), **STORED, "503": error_answer(unavailable)}
