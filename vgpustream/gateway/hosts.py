"""The gateway's side of the hosts: their tokens, calls with a deadline, relayed requests, and where a session is.

Every call to a host ends in bounded time (--host-timeout for lists and searches, --request-timeout for what
is relayed), and every way a host can fail maps to one error: a host that refuses the connection, drops it or
does not answer in time is `Unavailable` (503 with Retry-After); one that answers with something that is not
a vgpustream answer (no HTTP, a body that does not decode, a 500) is `BadGateway` (502). The gateway itself
answers 500 for none of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from vgpustream.api import schemas
from vgpustream.control.auth import token_lines
from vgpustream.errors import BadGateway, Conflict, NotFound, Unavailable, VgpuStreamError, bounded
from vgpustream.gateway.nodes import Discovery, Node
from vgpustream.gateway.schemas import UNREACHABLE, NodeSession, NodeSessionList, NodeState
from vgpustream.proxies import FORWARDED_FOR
from vgpustream.settings import NODE_NAME

log = logging.getLogger(__name__)

RETRY_AFTER = 5
"""Seconds after which a call for a host that did not answer may be tried again."""
MAX_ANSWER = 16 * 1024 * 1024
"""The largest JSON answer of a host the gateway reads whole (a list of sessions)."""
ROUTE = "node"
"""The query parameter that names a session's node where its id alone does not say."""
REQUEST_HEADERS = ("Content-Type", "Content-Length", "If-Match", "If-None-Match", "Range", "Accept", "User-Agent")
"""What of a client's request reaches the host (besides the Authorization the gateway chooses)."""
ANSWER_HEADERS = (
    "Content-Type", "Content-Length", "Content-Encoding", "Content-Range", "Accept-Ranges", "Content-Disposition",
    "Cache-Control", "ETag", "Last-Modified", "Link", "Accept-Patch", "Accept-Post", "Retry-After", "WWW-Authenticate",
)  # fmt: skip
"""What of a host's answer reaches the client (besides Location, which is routed)."""

Body = TypeVar("Body", bound=msgspec.Struct)


@dataclass(frozen=True)
class Probe:
    """How a host is asked whether it holds a session: the GET of `suffix` under the session, which answers
    `answer` where it does and 404 where it does not."""

    suffix: str
    answer: type[msgspec.Struct]
    listed: bool
    """Whether the hosts' lists of sessions say which host holds it (and a search may ask that one first)."""


SESSION = Probe("", schemas.Session, listed=True)
RECORDINGS = Probe("/recordings", schemas.RecordingList, listed=False)
"""A session's recordings outlive it: a host that deleted the session still holds them, which no list says."""


class HostTokens:
    """The operator token the gateway presents to each host: --host-token for all, and a file of `NAME TOKEN`
    lines (`* TOKEN`, or the token alone, for every host without a line of its own: the hosts' own token file
    will do; a host found in DNS is asked for its node's name with that one). They never reach a URL or a log
    line."""

    def __init__(self, default: str | None, file: Path | None) -> None:
        self._default = default
        self._by_node: dict[str, str] = {}
        for line in token_lines(file, "host token") if file else ():
            fields = line.split()
            if len(fields) > 2:
                raise VgpuStreamError("each line of the host token file must be `NAME TOKEN`, `* TOKEN` or `TOKEN`")
            if len(fields) == 1 or fields[0] == "*":
                self._default = fields[-1]
            else:
                self._by_node[fields[0]] = fields[1]

    def token(self, node: Node) -> str:
        token = self._by_node.get(node.name, self._default)
        if token is None:
            raise Unavailable(f"the gateway has no operator token for node {node.name} (--host-token-file)")
        return token

    def authorization(self, node: Node) -> str:
        return f"Bearer {self.token(node)}"


def routed(location: str, node: Node) -> str:
    """A host's Location (a path, or a URL of its own) as a path of the gateway that names the node."""
    path = URL(location)
    return str(URL.build(path=path.path, query={**path.query, ROUTE: node.name}, encoded=False))


def host_query(query: MultiDictProxy[str]) -> list[tuple[str, str]]:
    """A request's query as the host is to see it: without the gateway's `node`."""
    return [(key, value) for key, value in query.items() if key != ROUTE]


class Hosts:
    """The hosts the discovery knows, called through one connection pool; remembers what each listed last."""

    def __init__(
        self,
        discovery: Discovery,
        tokens: HostTokens,
        host_timeout: float,
        request_timeout: float,
        refresh_interval: float,
    ) -> None:
        self.discovery = discovery
        self._refresh_interval = refresh_interval
        self._refreshing: asyncio.Task[None] | None = None
        self.tokens = tokens
        self._quick = aiohttp.ClientTimeout(total=host_timeout)
        self._relayed = aiohttp.ClientTimeout(sock_connect=host_timeout, sock_read=request_timeout)
        self._client: aiohttp.ClientSession | None = None
        self._seen: dict[str, list[schemas.Session]] = {}
        """Each node's sessions when it last answered a list: what the list shows while the node does not
        answer, and where a search asks first."""

    async def start(self) -> None:
        # answers are relayed as they come (compressed or not), no host's cookie reaches another, the
        # connections are as many as the relayed requests and WebSockets (aiohttp's default caps them at 100):
        # each client's are bounded where they come in (--max-client-connections), and a WebSocket's handshake
        # is bounded as a relayed request is (aiohttp's default would wait 5 minutes)
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=self._relayed,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        await self.discovery.start(self.identify)
        self._refreshing = asyncio.create_task(self._refresh(), name="gateway-refresh")

    async def _refresh(self) -> None:
        """List every node now and every --refresh-interval: a replica that nobody asked for the list yet knows
        what a host held before it stopped answering."""
        while True:
            nodes = self.discovery.nodes()
            await self.sessions(list(nodes.values()), [])
            for gone in self._seen.keys() - nodes.keys():  # a node that left the cluster
                del self._seen[gone]
            await asyncio.sleep(self._refresh_interval)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        await self.discovery.stop()
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> aiohttp.ClientSession:
        assert self._client is not None, "Hosts.start() first"
        return self._client

    def node(self, name: str) -> Node:
        """The node of that name; NotFound (which names the known ones) for any other."""
        nodes = self.discovery.nodes()
        if name not in nodes:
            known = ", ".join(sorted(nodes)[:10]) or "none"
            raise NotFound(f"no node named {bounded(name, 60)} in the cluster (nodes: {known})")
        return nodes[name]

    def made(self, node: Node, session: schemas.Session) -> None:
        """A session this gateway has just made on `node`: among what the node holds until its next list (so that
        it is listed `unreachable` if the node stops answering before then)."""
        if node.name in self._seen:  # a node never listed stays unknown: one session is not all it has
            self._seen[node.name] = [*(s for s in self._seen[node.name] if s.id != session.id), session]

    def deleted(self, node: Node, session_id: str) -> None:
        """A session this gateway has just deleted on `node`: no longer among what the node holds."""
        if node.name in self._seen:
            self._seen[node.name] = [s for s in self._seen[node.name] if s.id != session_id]

    @contextmanager
    def reaching(self, node: Node) -> Iterator[None]:
        """Turn a failed call to `node` into Unavailable (no answer) or BadGateway (no valid answer)."""
        try:
            yield
        except (aiohttp.ClientConnectionError, TimeoutError):
            raise Unavailable(f"node {node.name} does not answer", RETRY_AFTER) from None
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError, msgspec.DecodeError):
            raise BadGateway(f"node {node.name} gave no valid answer") from None

    async def fetch(
        self,
        node: Node,
        path: str,
        struct: type[Body],
        query: Sequence[tuple[str, str]] = (),
        statuses: tuple[int, ...] = (200,),
    ) -> Body | None:
        """GET a JSON answer of `struct` (with one of `statuses`) from a host within --host-timeout; None for a
        404."""
        headers = {"Authorization": self.tokens.authorization(node)}
        with self.reaching(node):
            async with self.client.get(node.url + path, params=query, headers=headers, timeout=self._quick) as answer:
                if answer.status == 404:
                    return None
                if answer.status not in statuses:
                    raise BadGateway(f"node {node.name} answered {answer.status} to a call of the gateway's")
                return msgspec.json.decode(await whole_body(answer, node), type=struct)

    async def identify(self, url: str) -> str:
        """The node name of the host at `url`, which its /readyz tells the hosts' operator token (ready or not)."""
        found = Node(url, url)
        readiness = await self.fetch(found, "/readyz", schemas.Readiness, statuses=(200, 503))
        if readiness is None or not isinstance(readiness.node, str) or not NODE_NAME.fullmatch(readiness.node):
            raise BadGateway(f"the host at {url} names no node (its /readyz, for the hosts' operator token)")
        return readiness.node

    async def sessions(self, nodes: list[Node], query: list[tuple[str, str]]) -> NodeSessionList:
        """The sessions of `nodes`, asked all at once; a node that does not answer in time has those it had."""

        async def listing(node: Node) -> tuple[list[NodeSession], NodeState]:
            try:
                found = await self.fetch(node, "/api/v1/sessions", schemas.SessionList, query)
            except VgpuStreamError as error:
                seen = [held(session, node, UNREACHABLE) for session in self._seen.get(node.name, ())]
                return seen, NodeState(name=node.name, state=UNREACHABLE, message=error.message)
            sessions = found.sessions if found is not None else []
            if not query:  # a filtered list is not all the node has
                self._seen[node.name] = sessions
            return [held(session, node) for session in sessions], NodeState(name=node.name, state="up", message=None)

        answers = await asyncio.gather(*(listing(node) for node in nodes))
        return NodeSessionList(
            sessions=[session for sessions, _ in answers for session in sessions],
            nodes=[state for _, state in answers],
        )

    async def locate(self, session_id: str, query: MultiDictProxy[str], probe: Probe | None = None) -> Node:
        """The node that holds session `session_id` (`probe`: what a host is asked to tell it): the one `?node=`
        names, else the one that has it (asked first where the last lists saw it, if on one node alone, every
        node has answered a list and the lists say where it is; then every node at once). NotFound where none
        has it; Conflict where more than one has, or a node that does not answer listed it last (the request
        must then name the node); Unavailable where a node that might have it does not answer, so that a call
        (a revocation) never goes to another node that happens to hold the same id."""
        if ROUTE in query:
            return self.node(query[ROUTE])
        probe = probe or SESSION
        nodes = self.discovery.nodes()
        path = f"/api/v1/sessions/{quote(session_id, safe='')}{probe.suffix}"
        seen_on = [name for name, sessions in self._seen.items() if any(s.id == session_id for s in sessions)]
        everywhere = nodes.keys() <= self._seen.keys()  # every node has answered a list: the lists say it all
        hint = nodes.get(seen_on[0]) if len(seen_on) == 1 and everywhere and probe.listed else None
        if hint is not None:
            try:
                if await self.fetch(hint, path, probe.answer) is not None:
                    return hint
            except VgpuStreamError:
                pass  # asked again with the others below
        results = await asyncio.gather(
            *(self.fetch(node, path, probe.answer) for node in nodes.values()), return_exceptions=True
        )
        answers = list(zip(nodes.values(), results, strict=True))
        holders = [node.name for node, result in answers if isinstance(result, msgspec.Struct)]
        silent = [node.name for node, result in answers if isinstance(result, BaseException)]
        listed = [name for name in silent if name in seen_on]  # it had the session when it last answered
        unknown = [name for name in silent if name not in self._seen]  # never answered a list of this replica
        bounded_id = bounded(session_id, 60)
        if len(holders) + len(listed) > 1:
            names = ", ".join([*holders, *listed][:10])
            raise Conflict(f"session {bounded_id} is on more than one node ({names}): name it with ?node=")
        if holders and not unknown:
            return nodes[holders[0]]
        if holders:
            raise Unavailable(
                f"node {holders[0]} has session {bounded_id}, and {', '.join(unknown[:10])} (not answering) may have "
                "it too: name it with ?node=, or try again",
                RETRY_AFTER,
            )
        if silent:
            raise Unavailable(
                f"no node that answers has session {bounded_id}; {', '.join(silent[:10])} do not answer", RETRY_AFTER
            )
        raise NotFound(f"no node has session {bounded_id}")

    async def call(
        self,
        node: Node,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        query: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """A host's whole answer (status, headers, body) to a small request of the gateway's."""
        with self.reaching(node):
            async with self.client.request(
                method,
                node.url + path,
                params=query,
                data=body,
                headers=headers,
                timeout=self._relayed,
                allow_redirects=False,
            ) as answer:
                content = await whole_body(answer, node)
                check_status(answer.status, node)
                return answer.status, CIMultiDict(answer.headers), content

    async def relay(self, request: web.Request, node: Node, path: str, authorization: str | None) -> web.StreamResponse:
        """The client's request sent on to `node` at `path` and its answer sent back as it comes, neither held
        whole; `authorization` replaces the client's own (None: the request goes without one)."""
        headers = client_headers(request)
        if authorization is not None:
            headers["Authorization"] = authorization
        with self.reaching(node):
            answer = await self.client.request(
                request.method,
                node.url + path,
                params=host_query(request.query),
                headers=headers,
                data=request.content if request.body_exists else None,
                timeout=self._relayed,
                allow_redirects=False,
            )
        try:
            check_status(answer.status, node)
            response = web.StreamResponse(status=answer.status, headers=answer_headers(answer.headers, node))
            await response.prepare(request)
            try:
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, TimeoutError):
                # the host's answer broke off: so does ours, so that the client cannot take a part for the whole
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            answer.release()


async def whole_body(answer: aiohttp.ClientResponse, node: Node) -> bytes:
    """All of a host's answer, however many pieces it comes in, up to MAX_ANSWER bytes; an answer that breaks
    off raises aiohttp.ClientPayloadError (Hosts.reaching: BadGateway)."""
    body = bytearray()
    async for piece in answer.content.iter_any():
        body += piece
        if len(body) > MAX_ANSWER:
            raise BadGateway(f"node {node.name} answered more than {MAX_ANSWER} bytes")
    return bytes(body)


def client_headers(request: web.Request) -> dict[str, str]:
    """What of a client's request reaches its host, and who the client is (hosts that trust the gateway as a
    proxy, --trusted-proxy, count it by that address, not the gateway's)."""
    headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
    if request.remote is not None:
        headers[FORWARDED_FOR] = request.remote
    return headers


def check_status(status: int, node: Node) -> None:
    """A host's 5xx other than 503 (a bug of the host, or not a host at all) is BadGateway, not relayed."""
    if status >= 500 and status != 503:
        raise BadGateway(f"node {node.name} failed ({status})")


def answer_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str], node: Node) -> CIMultiDict[str]:
    """The headers of a host's answer that its client gets, its Location routed through the gateway."""
    relayed: CIMultiDict[str] = CIMultiDict()
    for name in ANSWER_HEADERS:
        for value in headers.getall(name, ()):
            relayed.add(name, value)
    if "Location" in headers:
        relayed["Location"] = routed(headers["Location"], node)
    return relayed


def held(session: schemas.Session, node: Node, state: str | None = None) -> NodeSession:
    """A host's session as the gateway shows it: with its node (and `state` in place of its own)."""
    fields = msgspec.structs.asdict(session)
    if state is not None:
        fields["state"] = state
    return NodeSession(**fields, node=node.name)
