"""The clipboard without a VM: the wire format, its limits, and tokens' clipboard access (tests/qemu: the real path)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from vgpustream.control.auth import Grant
from vgpustream.control.store import MIGRATIONS, Store
from vgpustream.input.clipboard import (
    MAX_MESSAGE_BYTES,
    MAX_TEXT_BYTES,
    PART_CHARS,
    Assembly,
    InvalidClipboard,
    check_text,
    is_clipboard_message,
    messages,
    parse_part,
)
from vgpustream.input.events import InvalidInput


def test_a_long_text_travels_in_parts_that_each_fit_a_data_channel_message_and_come_back_whole():
    text = ("\x01" * (PART_CHARS - 1) + "🐧") * 3  # control characters escape to 6 bytes each
    sent = messages(text)
    assert len(sent) == 3 and all(len(part.encode()) < MAX_MESSAGE_BYTES for part in sent)
    assembly = Assembly()
    results = [assembly.add(*parse_part(part)) for part in sent]
    assert results[:2] == [None, None] and results[2] == text
    assert messages("") == ['{"type": "clipboard", "text": "", "more": false}']


def test_a_text_over_the_limit_is_refused_once_all_its_parts_are_in():
    assembly = Assembly()
    part = "x" * PART_CHARS
    count = MAX_TEXT_BYTES // PART_CHARS + 1
    for _ in range(count - 1):
        assert assembly.add(part, True) is None
    with pytest.raises(InvalidClipboard):
        assembly.add(part, False)
    assert assembly.add("next", False) == "next", "the next text starts afresh"


@pytest.mark.parametrize(
    "message",
    [
        '{"type": "clipboard"}',
        '{"type": "clipboard", "text": 5}',
        '{"type": "clipboard", "text": "a", "more": "yes"}',
        b'{"type": "clipboard", "text": "\xff"}',
        '{"type": "clipboard", "text": "' + "x" * MAX_MESSAGE_BYTES + '"}',
        "[1]",
    ],
)
def test_malformed_clipboard_messages_are_invalid_input(message):
    with pytest.raises(InvalidInput):
        parse_part(message)


def test_only_unicode_text_within_the_limit_goes_to_the_guest():
    assert check_text("ünïcödé") == "ünïcödé".encode()
    with pytest.raises(InvalidClipboard):
        check_text("\ud800")
    with pytest.raises(InvalidClipboard):
        check_text("é" * (MAX_TEXT_BYTES // 2 + 1))


def test_clipboard_messages_are_told_from_input_events_by_their_start():
    assert is_clipboard_message(json.dumps({"type": "clipboard", "text": "a"}))
    assert is_clipboard_message(b' { "type" : "clipboard"')
    assert not is_clipboard_message('{"type": "key", "code": "KeyA", "down": true}')
    assert not is_clipboard_message('{"text": "a", "type": "clipboard"}'), "type first, as consoles send it"


async def test_a_tokens_clipboard_access_defaults_by_role_and_a_view_token_never_writes(make_server, http):
    server = await make_server()
    url = server.make_url("/api/v1/sessions/default/tokens")
    for body, access in [
        ({"role": "view"}, "read"),
        ({"role": "control"}, "readwrite"),
        ({"role": "control", "clipboard": "read"}, "read"),
        ({"role": "view", "clipboard": "none"}, "none"),
    ]:
        async with http.post(url, json=body) as response:
            assert response.status == 201 and (await response.json())["clipboard"] == access
    for body in ({"role": "view", "clipboard": "readwrite"}, {"role": "control", "clipboard": "all"}):
        async with http.post(url, json=body) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "bad_request"
    async with http.get(url) as response:
        listed = [token["clipboard"] for token in (await response.json())["tokens"]]
    assert listed == ["read", "readwrite", "read", "none"], "the refused requests made no token"


def test_tokens_from_before_clipboard_access_keep_what_their_role_gets(tmp_path):
    path = tmp_path / "v1.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(f"{MIGRATIONS[0]}; PRAGMA user_version = 1;")
    old.execute("INSERT INTO tokens VALUES ('t1', 'default', 'view', x'01', 1, 2, 0, NULL, NULL)")
    old.commit()
    old.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    record, _ = store.token_by_hash(b"\x01")
    assert record.role == "view" and record.clipboard is None and record.max_viewers is None
    assert Grant(record.role, record.id, record.clipboard).clipboard_access == "read"
    store.close()
