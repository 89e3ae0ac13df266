"""The key table against QEMU's keymap database (tests/keymaps.py): the same key number for each code."""

from __future__ import annotations

import pytest

from tests.keymaps import QEMU_7_2_NUMBERS, sample
from vgpustream.sources.common.qemu_input import QNUM


@pytest.mark.parametrize(("code", "number", "qcode"), sample(), ids=[row[0] for row in sample()])
def test_the_key_table_numbers_each_key_as_qemus_database(code, number, qcode):
    assert QNUM[code] == QEMU_7_2_NUMBERS.get(code, number), f"{code}: {QNUM[code]:#x}, database {number:#x}"
