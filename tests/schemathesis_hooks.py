"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): WHEP bodies are SDP text (offers and
trickled fragments)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def sdp(context: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    return {"data": value if isinstance(value, bytes) else str(value).encode("utf-8")}
