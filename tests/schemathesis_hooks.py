"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): WHEP bodies are SDP text."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/sdp")
def sdp(context: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    return {"data": value if isinstance(value, bytes) else str(value).encode("utf-8")}
