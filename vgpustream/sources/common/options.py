"""What source URLs of several schemes share: the plane edge limits, socket addresses, the options parser.

Each scheme names the options (`?name=value&...`) it takes; `Options` checks a URL's query against them,
so a wrong name or value gets an InvalidSourceUrl naming the scheme and every option it takes, with its range.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from vgpustream.errors import InvalidSourceUrl

MIN_EDGE = 64
"""The least max_edge a URL may set, and the least height of a synthetic picture."""
DEFAULT_MAX_EDGE = 8192
"""The largest plane width or height taken from a guest unless the URL sets max_edge; the largest synthetic picture."""
MAX_EDGE_LIMIT = 16384
"""The largest max_edge a URL may set."""

SOCKET = r"/[A-Za-z0-9._@+/-]{1,200}"
"""An absolute path of a unix socket, as a source URL may name one."""
QMP_ADDRESS = re.compile(rf"unix:({SOCKET})")
"""A QEMU monitor's address in a source URL: `unix:/run/vm/qmp.sock`."""

T = TypeVar("T")


class Option(ABC, Generic[T]):
    """One option a scheme takes: its name, its value when the URL leaves it out, and the values it allows."""

    name: str
    default: T

    @abstractmethod
    def parse(self, text: str) -> T:
        """The value `text` stands for; ValueError if the option does not allow it."""

    @abstractmethod
    def __str__(self) -> str:
        """The option as the usage in an error message shows it, e.g. `max_edge=64..16384`."""


@dataclass(frozen=True)
class Number(Option[int]):
    """A whole number within low..high."""

    name: str
    low: int
    high: int
    default: int

    def parse(self, text: str) -> int:
        # int() alone takes ' 64', '+64' and '6_4'; isdigit() alone passes '²', which int() refuses
        if not (text.isascii() and text.isdigit() and self.low <= int(text) <= self.high):
            raise ValueError(text)
        return int(text)

    def __str__(self) -> str:
        return f"{self.name}={self.low}..{self.high}"


@dataclass(frozen=True)
class Text(Option[str | None]):
    """Any text, absent by default; the scheme checks its shape and says what it should be."""

    name: str
    shape: str
    default: None = None

    def parse(self, text: str) -> str:
        return text

    def __str__(self) -> str:
        return f"{self.name}={self.shape}"


MAX_EDGE = Number("max_edge", MIN_EDGE, MAX_EDGE_LIMIT, DEFAULT_MAX_EDGE)
"""The largest plane width or height a source accepts from its guest."""


class Options:
    """The options of one source URL, each one its scheme takes, with a value it allows."""

    def __init__(self, scheme: str, query: str, *allowed: Option[Any]) -> None:
        known = {option.name: option for option in allowed}
        usage = f"{scheme}: takes only the options {' and '.join(map(str, allowed))}"
        self._values: dict[str, Any] = {}
        for name, texts in parse_qs(query, keep_blank_values=True).items():
            if name not in known:
                raise InvalidSourceUrl(usage)
            try:
                self._values[name] = known[name].parse(texts[-1])
            except ValueError:
                raise InvalidSourceUrl(usage) from None

    def __getitem__(self, option: Option[T]) -> T:
        return self._values.get(option.name, option.default)
