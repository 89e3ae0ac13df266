"""Reading request bodies safely: declared type, size cap, then parsing."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from aiohttp import web

from vgpustream.api.schemas import bad_request
from vgpustream.errors import PayloadTooLarge, UnsupportedMediaType, VgpuStreamError

Body = TypeVar("Body", bound=msgspec.Struct)


async def read_text(request: web.Request, content_type: str, limit: int) -> str:
    """The body as UTF-8 text, if it is declared `content_type` and at most `limit` bytes."""
    if request.content_type != content_type:
        raise UnsupportedMediaType(f"Content-Type must be {content_type}")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = bytearray()  # every piece the client sends, as many as it takes (one read is what has arrived)
    while len(body) <= limit and (piece := await request.content.read(limit + 1 - len(body))):
        body += piece
    if len(body) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise VgpuStreamError("body is not UTF-8 text") from None


MAX_JSON_DEPTH = 16
"""The deepest nesting of arrays and objects a body may have; deeper would reach Python's recursion limit
in the JSON decoder (and no request of ours nests more than three levels)."""


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of the JSON `text` nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for token in _BRACKETS_AND_STRINGS.findall(text):
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


_BRACKETS_AND_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


async def read_json(request: web.Request, limit: int, struct: type[Body]) -> Body:
    """The body as a JSON object of `struct` (vgpustream.api.schemas), which checks every field of it."""
    return decode_json(await read_text(request, "application/json", limit), struct)


def decode_json(text: str, struct: type[Body]) -> Body:
    """`text` as a JSON object of `struct`; every failure is a bad request that names the field."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise VgpuStreamError(f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return msgspec.json.decode(text, type=struct)
    except msgspec.ValidationError as exc:
        raise bad_request(exc) from None
    except msgspec.DecodeError:  # NaN and Infinity too: they are not JSON
        raise VgpuStreamError("body is not valid JSON") from None
