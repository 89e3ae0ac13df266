"""From the input protocol to QEMU's input model, shared by the D-Bus and QMP input sinks.

Keys: KeyboardEvent.code → QEMU's key number ("qnum": the PC scan code set 1 make code, with 0x80
added for the codes that follow an 0xE0 prefix), the numbering of org.qemu.Display1.Keyboard and of
QMP `input-send-event` key events of type "number". Buttons: the browser's `buttons` bitmask → QEMU's
InputButton enumeration; wheel steps → wheel button clicks.
"""

from __future__ import annotations

from abc import abstractmethod

from vgpustream.input.events import InputEvent, KeyEvent, MotionEvent, PointerEvent, WheelEvent
from vgpustream.sources.base import InputSink

_MAIN_BLOCK = {
    "Escape": 0x01,
    **{f"Digit{n}": 0x01 + n for n in range(1, 10)},
    "Digit0": 0x0B,
    "Minus": 0x0C,
    "Equal": 0x0D,
    "Backspace": 0x0E,
    "Tab": 0x0F,
    **{f"Key{c}": 0x10 + i for i, c in enumerate("QWERTYUIOP")},
    "BracketLeft": 0x1A,
    "BracketRight": 0x1B,
    "Enter": 0x1C,
    "ControlLeft": 0x1D,
    **{f"Key{c}": 0x1E + i for i, c in enumerate("ASDFGHJKL")},
    "Semicolon": 0x27,
    "Quote": 0x28,
    "Backquote": 0x29,
    "ShiftLeft": 0x2A,
    "Backslash": 0x2B,
    **{f"Key{c}": 0x2C + i for i, c in enumerate("ZXCVBNM")},
    "Comma": 0x33,
    "Period": 0x34,
    "Slash": 0x35,
    "ShiftRight": 0x36,
    "NumpadMultiply": 0x37,
    "AltLeft": 0x38,
    "Space": 0x39,
    "CapsLock": 0x3A,
    **{f"F{n}": 0x3A + n for n in range(1, 11)},
    "NumLock": 0x45,
    "ScrollLock": 0x46,
    "Numpad7": 0x47,
    "Numpad8": 0x48,
    "Numpad9": 0x49,
    "NumpadSubtract": 0x4A,
    "Numpad4": 0x4B,
    "Numpad5": 0x4C,
    "Numpad6": 0x4D,
    "NumpadAdd": 0x4E,
    "Numpad1": 0x4F,
    "Numpad2": 0x50,
    "Numpad3": 0x51,
    "Numpad0": 0x52,
    "NumpadDecimal": 0x53,
    "IntlBackslash": 0x56,  # the 105th key, between left Shift and Z
    "F11": 0x57,
    "F12": 0x58,
    "NumpadEqual": 0x59,
    "KanaMode": 0x70,
    "Lang2": 0x71,
    "Lang1": 0x72,
    "IntlRo": 0x73,
    "Convert": 0x79,
    "NonConvert": 0x7B,
    "IntlYen": 0x7D,
    "NumpadComma": 0x7E,
}

_EXTENDED = {  # sent as 0xE0 <code>; QEMU numbers them 0x80 | code
    "MediaTrackPrevious": 0x10,
    "MediaTrackNext": 0x19,
    "NumpadEnter": 0x1C,
    "ControlRight": 0x1D,
    "AudioVolumeMute": 0x20,
    "LaunchApp2": 0x21,
    "MediaPlayPause": 0x22,
    "MediaStop": 0x24,
    "AudioVolumeDown": 0x2E,
    "AudioVolumeUp": 0x30,
    "BrowserHome": 0x32,
    "NumpadDivide": 0x35,
    "AltRight": 0x38,
    "Pause": 0x46,  # QEMU's number for the E1-prefixed Pause key
    "Home": 0x47,
    "ArrowUp": 0x48,
    "PageUp": 0x49,
    "ArrowLeft": 0x4B,
    "ArrowRight": 0x4D,
    "End": 0x4F,
    "ArrowDown": 0x50,
    "PageDown": 0x51,
    "Insert": 0x52,
    "Delete": 0x53,
    "MetaLeft": 0x5B,
    "MetaRight": 0x5C,
    "ContextMenu": 0x5D,
    "Power": 0x5E,
    "Sleep": 0x5F,
    "WakeUp": 0x63,
    "BrowserSearch": 0x65,
    "BrowserFavorites": 0x66,
    "BrowserRefresh": 0x67,
    "BrowserStop": 0x68,
    "BrowserForward": 0x69,
    "BrowserBack": 0x6A,
    "LaunchApp1": 0x6B,
    "LaunchMail": 0x6C,
    "MediaSelect": 0x6D,
}

_BEYOND_PC = {  # keys a PC/AT keyboard lacks, numbered as QEMU's key map (keycodemapdb) numbers them
    "PrintScreen": 0x54,  # QEMU's "print" (SysRq's code); 0xB7 is the legacy E0 37 a guest may not map
    "F13": 0x5D,
    "F14": 0x5E,
    "F15": 0x5F,
    "F16": 0x55,
    "F17": 0x83,
    "F18": 0xF7,
    "F19": 0x84,
    "F20": 0x5A,
    "F21": 0x74,
    "F22": 0xF9,
    "F23": 0x6D,
    "F24": 0x6F,
    "Lang3": 0x78,  # Katakana
    "Lang4": 0x77,  # Hiragana
    "Lang5": 0x76,  # Zenkaku/Hankaku
    "Again": 0x85,
    "Props": 0x86,
    "Undo": 0x87,
    "Open": 0x64,
    "Paste": 0x65,
    "Cut": 0xBC,
    "Find": 0xC1,
    "Help": 0xF5,
    "Copy": 0xF8,
    "Eject": 0xFD,  # KEY_EJECTCLOSECD (E0 7D), the key the database names Eject
    "Suspend": 0xA5,
    "NumpadParenLeft": 0xF6,
    "NumpadParenRight": 0xFB,
}

QNUM: dict[str, int] = _MAIN_BLOCK | {code: 0x80 | scan for code, scan in _EXTENDED.items()} | _BEYOND_PC
"""KeyboardEvent.code → QEMU key number: a 104/105-key PC keyboard, Japanese keys, media and the keys beyond."""

# (bit in the browser's `buttons`, QEMU InputButton index, its QMP name)
BUTTONS = ((0, 0, "left"), (2, 1, "middle"), (1, 2, "right"), (3, 5, "side"), (4, 6, "extra"))
WHEEL_UP, WHEEL_DOWN, WHEEL_LEFT, WHEEL_RIGHT = 3, 4, 7, 8
BUTTON_NAMES = {index: name for _, index, name in BUTTONS} | {
    WHEEL_UP: "wheel-up",
    WHEEL_DOWN: "wheel-down",
    WHEEL_LEFT: "wheel-left",
    WHEEL_RIGHT: "wheel-right",
}
WHEEL_STEP = 100  # browsers report one notch of a mouse wheel as about 100 pixels
MAX_WHEEL_CLICKS = 5


def wheel_clicks(delta: int, negative: int, positive: int) -> list[int]:
    """Wheel button clicks for one wheel event's delta along one axis (at least one if it moved)."""
    if delta == 0:
        return []
    count = min(MAX_WHEEL_CLICKS, max(1, round(abs(delta) / WHEEL_STEP)))
    return [positive if delta > 0 else negative] * count


class QemuInput(InputSink):
    """Turns validated input events into QEMU key numbers, positions and button presses.

    Keys without a QEMU number are dropped (and counted in `unmapped`). Subclasses deliver.
    """

    def __init__(self) -> None:
        self.buttons = 0
        self.unmapped = 0

    def send(self, event: InputEvent) -> None:
        if isinstance(event, KeyEvent):
            qnum = QNUM.get(event.code)
            if qnum is None:
                self.unmapped += 1
                return
            self.key(qnum, event.down)
        elif isinstance(event, PointerEvent):
            self.move(event.x, event.y)
            self._press(event.buttons)
        elif isinstance(event, MotionEvent):
            self.relative(event.dx, event.dy)
            if event.buttons is not None:
                self._press(event.buttons)
        elif isinstance(event, WheelEvent):
            # browsers: positive dy scrolls down, positive dx scrolls right
            for index in wheel_clicks(event.dy, WHEEL_UP, WHEEL_DOWN) + wheel_clicks(event.dx, WHEEL_LEFT, WHEEL_RIGHT):
                self.button(index, True)
                self.button(index, False)

    def _press(self, buttons: int) -> None:
        """Press and release what differs between `buttons` and the buttons held."""
        for bit, index, _ in BUTTONS:
            mask = 1 << bit
            if (buttons ^ self.buttons) & mask:
                self.button(index, bool(buttons & mask))
        self.buttons = buttons

    @abstractmethod
    def key(self, qnum: int, down: bool) -> None: ...

    @abstractmethod
    def relative(self, dx: int, dy: int) -> None:
        """The pointer moved by (dx, dy) guest pixels (a locked pointer's motion)."""

    @abstractmethod
    def move(self, x: float, y: float) -> None:
        """The pointer is at (x, y), fractions of the display's width and height."""

    @abstractmethod
    def button(self, index: int, down: bool) -> None: ...
