"""Who may sit in a session: its seats, the operator's reserve, each token's own limit, and the viewers that left."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from vgpustream.audience.seat import Seat
from vgpustream.control.auth import Grant
from vgpustream.control.roles import OPERATOR
from vgpustream.errors import Full, NotFound
from vgpustream.settings import ViewerRules

GONE_GRACE_S = 60.0
"""How long a viewer that left is remembered as having been here (a late DELETE of it is no error)."""
GONE_LIMIT = 256
"""The most viewers remembered as gone; the oldest are forgotten first."""


class Admission:
    """The seated viewers of one session, by id: who gets a seat (`check_room`), until when its token lets it stay
    (`seat`), and who left (`leave`, `has_left`)."""

    def __init__(self, max_viewers: int, rules: ViewerRules, lose_control: Callable[[Seat, str], None]) -> None:
        self.max_viewers = max_viewers
        self._rules = rules
        self._lose_control = lose_control
        """Takes back what a viewer holds in the guest (keys down, the microphone) when its token's time is up, and
        tells it why."""
        self._viewers: dict[str, Seat] = {}
        self._expiry: dict[Seat, asyncio.TimerHandle] = {}
        """Ends what each viewer's token allows when the token expires (only for tokens that do)."""
        self._gone: OrderedDict[str, float] = OrderedDict()
        """The ids of viewers that left, with when (monotonic), oldest first."""

    def __iter__(self) -> Iterator[Seat]:
        return iter(list(self._viewers.values()))

    def __len__(self) -> int:
        return len(self._viewers)

    def check_room(self, grant: Grant) -> None:
        """Full unless the session has a seat for a viewer of `grant`: one of the session's, not the
        operator's (ViewerRules.operator_seats) unless the grant is the operator's, and within its token's own limit."""
        if len(self._viewers) >= self.max_viewers:
            raise Full(f"session has its maximum of {self.max_viewers} viewers")
        if grant.role == OPERATOR:
            return
        people = sum(viewer.role != OPERATOR for viewer in self._viewers.values())
        if people >= max(1, self.max_viewers - self._rules.operator_seats):
            raise Full("the session's last seat is kept for the operator")
        if grant.token_id is None:
            return
        seats = grant.max_viewers or self._rules.token_viewers
        if sum(viewer.token_id == grant.token_id for viewer in self._viewers.values()) >= seats:
            raise Full(f"this token has its maximum of {seats} viewers")

    def seat(self, viewer: Seat, grant: Grant) -> None:
        """`viewer` takes its seat, until its token (`grant`) expires where it does."""
        self._viewers[viewer.id] = viewer
        if grant.expires_at is not None:
            delay = max(0.0, grant.expires_at - time.time())
            self._expiry[viewer] = asyncio.get_running_loop().call_later(delay, self._token_expired, viewer)

    def leave(self, viewer: Seat) -> bool:
        """`viewer` gives its seat back and is remembered as gone; whether it had one."""
        seated = self._viewers.pop(viewer.id, None) is not None
        self._remember_gone(viewer.id)
        expiry = self._expiry.pop(viewer, None)
        if expiry is not None:
            expiry.cancel()
        return seated

    def viewer(self, viewer_id: str) -> Seat:
        try:
            return self._viewers[viewer_id]
        except KeyError:
            raise NotFound("no such viewer") from None

    def has_left(self, viewer_id: str) -> bool:
        """Whether `viewer_id` was a viewer of this session that left within the last GONE_GRACE_S."""
        left_at = self._gone.get(viewer_id)
        return left_at is not None and time.monotonic() - left_at < GONE_GRACE_S

    def _token_expired(self, viewer: Seat) -> None:
        """The viewer's token expired: it is disconnected, or (--on-token-expiry view) it only watches from now
        on; either way it is told why."""
        if self._expiry.pop(viewer, None) is None:
            return
        if self._rules.on_token_expiry == "disconnect":
            viewer.dismiss("token_expired", "the link's time is up")
            return
        viewer.role, viewer.clipboard, viewer.may_speak = "view", "none", False
        self._lose_control(viewer, "the link's time is up")
        viewer.send_message(
            json.dumps({"type": "expired", "message": "the link's time is up: the VM takes no more input from it"})
        )

    def _remember_gone(self, viewer_id: str) -> None:
        now = time.monotonic()
        self._gone[viewer_id] = now
        while self._gone and (len(self._gone) > GONE_LIMIT or now - next(iter(self._gone.values())) >= GONE_GRACE_S):
            self._gone.popitem(last=False)
