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
    "query",
    [
        "cycle=0",
        "cycle=3601",
        "cycle=1.5",
        "cycle=x",
        "cycle=",
        "cycles=1",
        "tone=19",
        "tone=20001",
        "tone=4.5",
        "tone=",
    ],
)
def test_bad_options_are_refused(query):
    with pytest.raises(InvalidSourceUrl):
        create_source(f"synthetic:320x240@30?{query}")


@pytest.mark.parametrize("query", ["seed=-1", "seed=2147483648", "seed=1.5", "seed=99999999999999", "seed=x"])
def test_bad_seeds_are_refused_with_their_range(query):
    with pytest.raises(InvalidSourceUrl, match=r"seed must be a whole number within 0\.\.2147483647"):
        create_source(f"synthetic:320x240@30?{query}")


@pytest.mark.parametrize("name", ["desktops", "", "TEXT", "x" * 500])
def test_an_unknown_pattern_is_refused_naming_the_patterns_there_are(name):
    with pytest.raises(InvalidSourceUrl, match=r"unknown synthetic pattern .*; known: desktop, text$") as refused:
        create_source(f"synthetic:320x240@30?pattern={name}")
    assert len(refused.value.message) < 100, "what the user sent is cut short"


@pytest.mark.parametrize("spec", ["190x240", "320x62", "8194x240", "320x8194", "321x240", "0x0"])
def test_a_size_out_of_range_is_refused_with_the_ranges(spec):
    with pytest.raises(InvalidSourceUrl, match=r"even, width 192\.\.8192, height 64\.\.8192"):
        create_source(f"synthetic:{spec}@30?pattern=desktop")
