"""The synthetic source's URL options."""

from __future__ import annotations

import itertools
import time

import pytest

from vgpustream.errors import InvalidSourceUrl
from vgpustream.sources import create_source


def test_cycle_switches_between_the_size_and_half_of_it():
    source = create_source("synthetic:640x360@30?cycle=1")
    sizes: list[tuple[int, int]] = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        frame = source.next_frame()
        if frame is not None:
            sizes.append(frame.pixels.shape[1::-1])
            assert source.planes().primary is not None
            assert (source.planes().primary.width, source.planes().primary.height) == sizes[-1]
        time.sleep(0.02)
    changes = [b for a, b in itertools.pairwise(sizes) if a != b]
    assert sizes[0] == (640, 360) and set(sizes) == {(640, 360), (320, 180)} and len(changes) >= 2


@pytest.mark.parametrize(
    "query", ["cycle=0", "cycle=3601", "cycle=1.5", "cycle=x", "cycles=1", "tone=19", "tone=20001", "tone=4.5"]
)
def test_bad_options_are_refused(query):
    with pytest.raises(InvalidSourceUrl):
        create_source(f"synthetic:320x240@30?{query}")
