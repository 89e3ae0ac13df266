"""The display heads of a session's VM: each with what it shows, and a session per head on request.

A QEMU VM with `-device virtio-vga,max_outputs=2` has two heads (QEMU's Console_0 and Console_1); a
session shows one of them (its source URL's `?console=N`). Another head gets a session of its own, made
from the same source URL with that head's number, the same labels, encoder settings and viewer limit.
"""

from __future__ import annotations

import dataclasses
import re
import time

from aiohttp import web

from vgpustream.api import schemas
from vgpustream.api.answers import ERRORS, LIMITED, STORED, error_answer, json_answer, stored_change
from vgpustream.api.route import OPERATOR_OR_VIEWER, Route
from vgpustream.api.schemas import MAX_NAME, json_response
from vgpustream.api.sessions import session_body
from vgpustream.api.state import AUDIT, AUTHORITY, REGISTRY, SETTINGS, base_url, rate_limit
from vgpustream.api.tokens import links, token_fields
from vgpustream.control.roles import OPERATOR
from vgpustream.errors import NotFound
from vgpustream.registry import SessionRegistry
from vgpustream.session import Session
from vgpustream.sources.qemu.url import head_of, head_url

MAX_ID = 63
"""The longest session id (vgpustream.api.schemas.SessionCreate)."""
VIEWER_PATHS = re.compile(r"/api/v1/sessions/[^/]+/heads(?:/[^/]+/link)?")
"""The routes a viewer token of the session opens too (they check it themselves): a console lists its VM's
heads and opens one."""


async def heads_of(registry: SessionRegistry, session: Session) -> list[schemas.Head]:
    """The heads of `session`'s VM, each with the session that shows it, if any (whose state is the head's)."""
    snapshot, directory = session.capture.snapshot, session.capture.heads
    if directory is None:
        primary = snapshot.planes.primary
        width, height = (primary.width, primary.height) if primary else (0, 0)
        return [schemas.Head(0, "", width, height, snapshot.state.value, session.id)]
    vm, own = head_of(session.spec.source)
    shown: dict[int, Session] = {}
    for other in registry:
        other_vm, console = head_of(other.spec.source)
        if other_vm == vm:
            shown.setdefault(console, other)
    shown[own] = session
    heads = await directory.list({console: other.capture.snapshot.state for console, other in shown.items()})
    return [
        schemas.Head(
            console=head.console,
            label=head.label,
            width=head.width,
            height=head.height,
            state=head.state.value,
            session=shown[head.console].id if head.console in shown else None,
        )
        for head in heads
    ]


async def list_heads(request: web.Request) -> web.Response:
    """The heads of the session's VM; a viewer token of the session may ask too (its console's head switcher)."""
    request.app[AUTHORITY].viewer_grant(request, request.match_info["id"], consume=False)
    registry = request.app[REGISTRY]
    session = registry.get(request.match_info["id"])
    return json_response(schemas.HeadList(heads=await heads_of(registry, session)))


async def head_session(registry: SessionRegistry, session: Session, number: str) -> tuple[Session, bool]:
    """The session showing head `number` of `session`'s VM, and whether it was made now (it is when there is none).
    NotFound, listing the VM's heads, for a head it does not have."""
    heads = await heads_of(registry, session)
    head = next((head for head in heads if str(head.console) == number), None)
    if head is None:
        numbers = ", ".join(str(head.console) for head in heads)
        raise NotFound(f"the session's VM has no head {number[:8]!r}; its heads: {numbers}")
    if head.session is not None:
        return registry.get(head.session), False
    suffix = f"-head{head.console}"
    spec = dataclasses.replace(
        session.spec,
        id=session.id[: MAX_ID - len(suffix)] + suffix,
        source=head_url(session.spec.source, head.console),
        name=f"{session.spec.name} ({head.label or f'head {head.console}'})"[:MAX_NAME] if session.spec.name else "",
        created_at=time.time(),
    )
    return await registry.create(spec), True


async def open_head(request: web.Request) -> web.Response:
    """The session that shows head N of the VM: 200 if there is one, else made now (201)."""
    registry = request.app[REGISTRY]
    session = registry.get(request.match_info["id"])
    shown, created = await head_session(registry, session, request.match_info["head"])
    location = {"Location": f"/api/v1/sessions/{shown.id}"}
    return json_response(session_body(shown), status=201 if created else 200, headers=location)


async def link_head(request: web.Request) -> web.Response:
    """A console link to head N of the VM, for whoever holds a token of the session: a token of the session
    showing that head (made if there is none) with the caller's role, clipboard access and viewers, which
    expires when the caller's does (an operator's after --token-ttl)."""
    rate_limit(request)
    settings = request.app[SETTINGS]
    grant = request.app[AUTHORITY].viewer_grant(request, request.match_info["id"], consume=False)
    registry = request.app[REGISTRY]
    session = registry.get(request.match_info["id"])
    base = base_url(request)  # before anything is made: a request for a foreign Host makes nothing
    shown, _ = await head_session(registry, session, request.match_info["head"])
    ttl = settings.token_ttl if grant.expires_at is None else max(1, int(grant.expires_at - time.time()))
    record, secret = request.app[AUTHORITY].issue(
        shown.id,
        role="control" if grant.role == OPERATOR else grant.role,
        ttl_seconds=ttl,
        single_use=False,
        clipboard=grant.clipboard,
        max_viewers=grant.max_viewers,
    )
    request.app[AUDIT].token_created(record)
    fields = token_fields(record, settings.token_max_viewers)
    return json_response(schemas.IssuedToken(**fields, **links(base, shown.id, secret)), 201)


HEAD = {"head": "The head's number (`console` in the list of heads)"}
NO_HEAD = error_answer("No such session, or no such head (the message lists the VM's heads)")
ID_TAKEN = "The id this head's session would have is taken by another session"
ROUTES = [
    Route(
        "GET",
        "/api/v1/sessions/{id}/heads",
        list_heads,
        "listHeads",
        "The display heads of the session's VM (QEMU: one per Console), each with what it shows and the session "
        "showing it",
        tag="sessions",
        answers={
            "200": json_answer(schemas.HeadList, "The heads"),
            **ERRORS,
            "503": error_answer("The VM cannot be asked now (source_unavailable: no display attached)"),
        },
        security=OPERATOR_OR_VIEWER,
    ),
    Route(
        "POST",
        "/api/v1/sessions/{id}/heads/{head}",
        open_head,
        "openHead",
        "The session showing one head of the VM: the one there is, or a new one (the same source URL with "
        "`?console=` that head, labels, encoder settings and viewer limit)",
        tag="sessions",
        answers=stored_change(
            {
                "200": json_answer(schemas.Session, "The session that shows the head already"),
                "201": json_answer(schemas.Session, "Created; Location names it"),
            },
            conflict=ID_TAKEN,
            unavailable="The VM cannot be asked now (source_unavailable), no room (full; see Retry-After), or the "
            "state database cannot be written (storage_unavailable)",
        )
        | {"404": NO_HEAD},
        path_descriptions=HEAD,
    ),
    Route(
        "POST",
        "/api/v1/sessions/{id}/heads/{head}/link",
        link_head,
        "linkHead",
        "A console link to one head of the VM, for a holder of any token of the session (the console's head "
        "switcher): a token of the session showing the head (made if there is none) with the caller's role, "
        "clipboard access and viewers, expiring when the caller's token does",
        tag="sessions",
        answers={
            "201": json_answer(schemas.IssuedToken, "Issued; the secret is shown only now"),
            **ERRORS,
            "404": NO_HEAD,
            "409": error_answer(ID_TAKEN),
            "421": error_answer("The request's Host is none of the server's names (--allowed-host)"),
            **LIMITED,
            **STORED,
            "503": error_answer(
                "The VM cannot be asked now (source_unavailable), no room (full; see Retry-After), or the state "
                "database cannot be written (storage_unavailable)"
            ),
        },
        path_descriptions=HEAD,
        security=OPERATOR_OR_VIEWER,
    ),
]
