"""The gateway's own bodies: the host's (vgpustream.api.schemas), each session with the node that holds it."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from vgpustream.api import schemas
from vgpustream.settings import NODE_NAME
from vgpustream.sources.base import SourceState

UNREACHABLE = "unreachable"
NodeName = Annotated[str, Meta(pattern=f"^{NODE_NAME.pattern}$", description="the node (host) of the session")]


class NodeSessionCreate(schemas.SessionCreate, kw_only=True):
    """A new session on the host of node `node` (the control plane knows where its VM runs)."""

    node: NodeName


class NodeSession(schemas.Session):
    """A session with its node; `unreachable` (with what the gateway last saw of it) while its host does not
    answer."""

    state: Literal[(*(state.value for state in SourceState), UNREACHABLE)]
    node: NodeName


class NodeState(schemas.Closed):
    name: str
    state: Literal["up", "unreachable"]
    message: str | None


class NodeSessionList(schemas.Closed):
    sessions: list[NodeSession]
    nodes: Annotated[list[NodeState], Meta(description="every node asked, and whether it answered")]


class RelayedEventPage(schemas.Closed):
    """A host's page of its audit trail (vgpustream.api.schemas.EventPage), each event passed on as the host wrote
    it: its fields depend on its type."""

    events: list[msgspec.Raw]
    next: str | None
