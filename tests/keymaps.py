"""A sample of QEMU's keymap database, keycodemapdb's data/keymaps.csv (github.com/qemu/keycodemapdb, as of
2025): for some keys of each group, the KeyboardEvent.code ("HTML code"), the PC set 1 scan code ("AT set1
keycode") and QEMU's name for the key ("QEMU QKeyCode"; empty where QEMU has none; of two rows for a key,
the one QEMU traces). QEMU's key number
("qnum", the numbering of its D-Bus Keyboard) is the set 1 code, with 0x80 added for the E0-prefixed ones.
"""

from __future__ import annotations

import csv
import io

SAMPLE = """\
HTML code,AT set1 keycode,QEMU QKeyCode
Escape,0x01,esc
Digit0,0x0b,0
KeyQ,0x10,q
KeyA,0x1e,a
Backquote,0x29,grave_accent
Backslash,0x2b,backslash
NumpadMultiply,0x37,kp_multiply
CapsLock,0x3a,caps_lock
F10,0x44,f10
ScrollLock,0x46,scroll_lock
NumpadDecimal,0x53,kp_decimal
IntlBackslash,0x56,less
F12,0x58,f12
NumpadEqual,0x59,kp_equals
NumpadEnter,0xe01c,kp_enter
ControlRight,0xe01d,ctrl_r
NumpadDivide,0xe035,kp_divide
AltRight,0xe038,alt_r
Pause,0xe046,pause
ArrowUp,0xe048,up
Delete,0xe053,delete
MetaLeft,0xe05b,meta_l
ContextMenu,0xe05d,compose
AudioVolumeMute,0xe020,audiomute
MediaPlayPause,0xe022,audioplay
LaunchApp2,0xe021,calculator
BrowserBack,0xe06a,ac_back
BrowserFavorites,0xe066,ac_bookmarks
LaunchMail,0xe06c,mail
Power,0xe05e,power
WakeUp,0xe063,wake
KanaMode,0x70,katakanahiragana
IntlRo,0x73,ro
Convert,0x79,henkan
NonConvert,0x7b,muhenkan
IntlYen,0x7d,yen
NumpadComma,0x7e,kp_comma
Lang1,0xf2,lang1
Lang2,0xf1,lang2
Lang3,0x78,
Lang4,0x77,hiragana
Lang5,0x76,
PrintScreen,0x54,print
F13,0x5d,f13
F16,0x55,f16
F17,0xe003,f17
F18,0xe077,f18
F21,0x74,f21
F24,0x6f,f24
Again,0xe005,again
Props,0xe006,props
Undo,0xe007,undo
Copy,0xe078,copy
Open,0x64,open
Paste,0x65,paste
Find,0xe041,find
Cut,0xe03c,cut
Help,0xe075,help
Eject,0xe07d,
Suspend,0xe025,
NumpadParenLeft,0xe076,
NumpadParenRight,0xe07b,
"""

QEMU_7_2_NUMBERS = {"Lang1": 0x72, "Lang2": 0x71}
"""Keys QEMU 7.2 numbers otherwise: its copy of the database gave the Korean keys set 1 codes 0x72/0x71, which
it still maps to lang1/lang2 (and 0xf2/0xf1 to nothing, as a trace of QEMU 7.2 shows)."""


def qnum(set1: str) -> int:
    """QEMU's key number for a set 1 scan code: E0-prefixed codes get 0x80 added."""
    code = int(set1, 16)
    return 0x80 | code & 0x7F if code > 0xFF else code


def sample() -> list[tuple[str, int, str]]:
    """(KeyboardEvent.code, QEMU key number, QKeyCode or '') of every key in the sample."""
    rows = csv.DictReader(io.StringIO(SAMPLE))
    return [(row["HTML code"], qnum(row["AT set1 keycode"]), row["QEMU QKeyCode"]) for row in rows]
