"""What the synthetic source draws: a pattern, given the picture's number and what a viewer did since."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vgpustream.input.events import PointerEvent
from vgpustream.sources.base import Cursor, Rect


@dataclass(frozen=True)
class ViewerInput:
    """A viewer's input as a pattern takes it: the pointer now, what was typed and clicked since the last picture."""

    pointer: PointerEvent | None = None
    typed: str = ""
    """Characters typed, newline for Enter and backspace (\\b) for Backspace."""
    clicks: tuple[tuple[float, float], ...] = ()
    """Where the primary button went down, as fractions of the picture's width and height."""


class Pattern(ABC):
    """A picture of one size, drawn into `pixels` (XRGB8888) a picture at a time."""

    pixels: np.ndarray

    @abstractmethod
    def draw(self, number: int, viewer: ViewerInput) -> tuple[Rect, ...]:
        """Bring `pixels` to picture `number` with the viewer's input; the rectangles that changed (none: nothing)."""

    @abstractmethod
    def cursor(self, pointer: PointerEvent | None) -> Cursor | None:
        """The pointer as a cursor plane, if the pattern offers one, with the viewer's pointer at `pointer`."""
