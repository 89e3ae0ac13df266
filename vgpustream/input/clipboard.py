"""The clipboard between viewers and the guest: text only, bounded, over the input data channel.

A clipboard text travels as one or more messages `{"type": "clipboard", "text": part, "more": bool}`
(a part is at most PART_CHARS characters, so every message fits a data channel's 256 KiB; the last part
has `"more": false` or no `more`). What a viewer may do is its token's clipboard access: `none`, `read`
(a view token's default; a view token never gets more), or `readwrite` (a control token's default).
The text is never logged; only counts are kept.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from vgpustream.input.events import InvalidInput, has_type, json_object

MAX_TEXT_BYTES = 1 << 20
"""The largest clipboard text (UTF-8 bytes) taken from a viewer or the guest; larger ones are refused."""
PART_CHARS = 32_768
"""Characters per message: escaped as JSON (at most 6 bytes each) it stays below 256 KiB."""
MAX_MESSAGE_BYTES = 256 * 1024
ACCESS = ("none", "read", "readwrite")
"""What a viewer token may do with the guest's clipboard."""


class InvalidClipboard(InvalidInput):
    """A clipboard message that is not one, or a text that is too large or not Unicode."""


def default_access(role: str) -> str:
    """The clipboard access a role gets unless its token says otherwise: view reads, control writes too."""
    return "read" if role == "view" else "readwrite"


def is_clipboard_message(message: str | bytes) -> bool:
    """Whether a data-channel message is a clipboard part (by its start: `{"type": "clipboard"`)."""
    return has_type(message, "clipboard")


def parse_part(message: str | bytes) -> tuple[str, bool]:
    """The text of a clipboard message and whether more parts follow; InvalidInput if it is not one."""
    data = json_object(message, MAX_MESSAGE_BYTES)
    if data.get("type") != "clipboard":
        raise InvalidClipboard("not a clipboard message")
    text, more = data.get("text"), data.get("more", False)
    if not isinstance(text, str) or not isinstance(more, bool):
        raise InvalidClipboard("text must be a string and more a boolean")
    return text, more


def check_text(text: str) -> bytes:
    """`text` as UTF-8; InvalidClipboard if it is not Unicode text (lone surrogates) or too large."""
    try:
        data = text.encode()
    except UnicodeEncodeError:
        raise InvalidClipboard("clipboard text is not valid Unicode") from None
    if len(data) > MAX_TEXT_BYTES:
        raise InvalidClipboard(f"clipboard text over {MAX_TEXT_BYTES} bytes")
    return data


def messages(text: str) -> list[str]:
    """The data-channel messages that carry `text` to a viewer."""
    parts = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    return [
        json.dumps({"type": "clipboard", "text": part, "more": index < len(parts) - 1}, ensure_ascii=False)
        for index, part in enumerate(parts)
    ]


@dataclass
class ClipboardStats:
    clipboard_to_guest: int = 0
    """Texts viewers gave the guest."""
    clipboard_from_guest: int = 0
    """Texts the guest gave the viewers."""
    clipboard_refused: int = 0
    """Texts (or parts) refused: too large, not Unicode, malformed, or from a viewer that may not write,
    or from the guest."""


@dataclass
class Assembly:
    """A viewer's clipboard text arriving in parts."""

    parts: list[str] = field(default_factory=list)
    size: int = 0
    refused: bool = False
    """The text grew too large (or a part was bad): its remaining parts are dropped."""

    def add(self, text: str, more: bool) -> str | None:
        """Add a part; the whole text after its last part, else None; InvalidClipboard if it grew too large."""
        if not self.refused:
            self.size += len(text)
            self.refused = self.size > MAX_TEXT_BYTES  # characters first: no need to encode a flood
            self.parts.append(text)
        if more:
            return None
        whole, refused = "".join(self.parts), self.refused
        self.parts, self.size, self.refused = [], 0, False
        if refused:
            raise InvalidClipboard(f"clipboard text over {MAX_TEXT_BYTES} bytes")
        return whole


class GuestClipboard(ABC):
    """A source's clipboard, on the event loop: `write` offers the guest a text, the guest's come to `listener`."""

    def __init__(self) -> None:
        self.available = False
        """Whether the guest's clipboard is reachable now."""
        self.listener: Callable[[str], None] | None = None

    @abstractmethod
    def write(self, text: str) -> None:
        """Make `text` the guest's clipboard (never blocks; the guest fetches it when it pastes)."""

    def deliver(self, text: str) -> None:
        if self.listener is not None:
            self.listener(text)
