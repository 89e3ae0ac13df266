"""`vgpustream bench qemu`: how soon a viewer sees a QEMU VM start, and what a key press did.

A private D-Bus daemon, a `vgpustream serve` process with the session on `qemu-dbus:` and one viewer
(aiortc on loopback, or the web console in Chromium) connected before QEMU starts. Each run starts
QEMU (SeaBIOS, std VGA, no disk) and measures the wall-clock time to the first frame of the new VM in
the viewer (QEMU's placeholder screen or SeaBIOS's); when SeaBIOS shows its boot menu prompt (read from the
VGA text buffer over QMP) it presses Escape in the viewer and measures the time to the first frame
that shows the boot menu (pressing again if the guest missed it: see `one_run`). Then QEMU is killed:
the session waits for it, as it would for a restarted VM. The first run warms up and is not counted.

An aiortc viewer releases a frame only when the next one arrives (its jitter buffer), so it reads
later than a browser on a screen that changes seldom; Chromium's figures are the ones a person sees.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from vgpustream.compat import advertise_host_addresses
from vgpustream.sources.common.qmp import Qmp
from vgpustream.testing.chromium import CONNECTED, ConsolePage
from vgpustream.testing.qemu import BOOT_MENU, MENU_PROMPT, Bus, Qemu, missing
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import serve

TIMEOUT = 60.0
SETTLE = 3.0  # seconds: longer than the keyframe interval
PRESS_AGAIN = 2.0  # seconds without the boot menu after a press: SeaBIOS missed it
MAX_MISSED = 5
CHANGED_PIXELS = 300  # far-off pixels that make a new screen (a line of text is ~500; a blinking cursor 18)


async def wait_text(vm: Qemu, words: str, timeout: float = TIMEOUT) -> None:
    """Until the VGA text buffer, read over the VM's monitor, shows `words`; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not vm.qmp_path.exists():
        await _before(deadline, "QEMU's monitor")
    qmp = await Qmp(str(vm.qmp_path)).connect()
    dump = vm.directory / "text.bin"
    try:
        while True:
            await qmp.execute("pmemsave", {"val": 0xB8000, "size": 4000, "filename": str(dump)})
            if words in dump.read_bytes()[::2].decode("cp437"):
                return
            await _before(deadline, repr(words), timeout)
    finally:
        await qmp.close()


async def _before(deadline: float, what: str, timeout: float = TIMEOUT) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"no {what} within {timeout:g} s")
    await asyncio.sleep(0.02)


def _far_pixels(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return a.size
    return int(np.count_nonzero((np.abs(a.astype(np.int16) - b) > 96).any(axis=2)))


class AiortcViewer:
    """A WHEP viewer in this process that decodes every frame as it comes and notes when the screen changes."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.receiver = WhepReceiver(f"{base}/whep/default", http)
        self.changes: list[float] = []
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.receiver.connect()
        await self.receiver.wait_channel_open()
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        last: np.ndarray | None = None
        while True:
            frame = await self.receiver.next_frame(timeout=3600)
            picture = frame.picture.to_ndarray(format="rgb24")
            if last is None or _far_pixels(picture, last) > CHANGED_PIXELS:
                self.changes.append(frame.received_at)
            last = picture

    async def changed_after(self, since: float) -> float:
        """The time of the first frame decoded after `since` that shows another screen."""
        deadline = time.monotonic() + TIMEOUT
        while not (later := [t for t in self.changes if t > since]):
            await _before(deadline, "changed frame")
        return later[0]

    async def press_escape(self) -> float:
        pressed = time.time()
        for down in (True, False):
            self.receiver.send_input({"type": "key", "code": "Escape", "down": down})
        return pressed

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.receiver.close()


# In the page: each presented video frame is sampled on a small canvas; a frame whose samples differ
# from the previous frame's in more than a few cells is recorded as a change, with Date.now().
WATCH_FRAMES = """() => {
  const video = document.getElementById("screen");
  const canvas = new OffscreenCanvas(180, 100);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  window.benchChanges = [];
  let last = null;
  const sample = () => {
    context.drawImage(video, 0, 0, 180, 100);
    const data = context.getImageData(0, 0, 180, 100).data;
    let differing = 0;
    if (last) for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i + 1] - last[i + 1]) > 48) differing++;
    if (!last || differing > 12) window.benchChanges.push(Date.now());
    last = data;
    video.requestVideoFrameCallback(sample);
  };
  video.requestVideoFrameCallback(sample);
  document.getElementById("stage").addEventListener("keydown", () => { window.benchKey = Date.now(); }, true);
}"""


class ChromiumViewer:
    """The web console in Debian's Chromium (needs the `test` extra's playwright); change times are
    when the page is handed a changed video frame."""

    def __init__(self, base: str, chromium: str) -> None:
        # no QEMU runs yet: the console is connected to a lost display
        self._console = ConsolePage(f"{base}/?session=default", chromium, until=CONNECTED)
        self.page: Any = None

    async def open(self) -> None:
        self.page = await self._console.__aenter__()
        await self.page.evaluate(WATCH_FRAMES)

    async def changed_after(self, since: float) -> float:
        deadline = time.monotonic() + TIMEOUT
        while True:
            changes = await self.page.evaluate("window.benchChanges")
            later = [t / 1000 for t in changes if t / 1000 > since]
            if later:
                return later[0]
            await _before(deadline, "changed frame")

    async def press_escape(self) -> float:
        await self.page.focus("#stage")  # keys only (a click would send the VM a mouse click too)
        await self.page.keyboard.press("Escape")
        return await self.page.evaluate("window.benchKey") / 1000

    async def close(self) -> None:
        await self._console.__aexit__(None, None, None)


def _summary(values: list[float], scale: float, digits: int) -> dict[str, Any]:
    scaled = [round(v * scale, digits) for v in values]
    return {"median": round(statistics.median(values) * scale, digits), "all": scaled}


async def one_run(viewer: AiortcViewer | ChromiumViewer, directory: Path, bus: Bus) -> tuple[float, float, int]:
    """Start QEMU, press Escape at its prompt, kill it: seconds to the first frame and to the boot menu's,
    and how many presses SeaBIOS missed.

    SeaBIOS shows its prompt before its PS/2 keyboard is set up (that runs beside it), and QEMU drops a
    key that comes before: seen with QEMU's ps2 trace events, no `ps2_put_keycode` for such a press, on
    a busy machine (Chromium decoding beside a TCG guest). A press the guest missed is pressed again."""
    vm = Qemu(directory, f"dbus,addr={bus.address}")
    missed = 0
    try:
        first = await viewer.changed_after(vm.started)
        await wait_text(vm, MENU_PROMPT)
        await asyncio.sleep(0.5)  # let the prompt's frames reach the viewer
        while True:
            pressed = await viewer.press_escape()
            try:
                await wait_text(vm, BOOT_MENU, PRESS_AGAIN)
                break
            except TimeoutError:
                if missed == MAX_MISSED:
                    raise
                missed += 1
        shown = await viewer.changed_after(pressed)
    finally:
        vm.kill()
    return first - vm.started, shown - pressed, missed


async def measure(runs: int, viewer_kind: str, chromium: str) -> dict[str, Any]:
    if reason := missing():
        raise SystemExit(f"bench qemu: {reason}")
    advertise_host_addresses(["127.0.0.1"])  # the viewer and the server meet on loopback
    first_frames: list[float] = []
    key_to_frames: list[float] = []
    presses_missed = 0
    with tempfile.TemporaryDirectory(prefix="vgpustream-bench-qemu-") as folder:
        bus = Bus(Path(folder))
        try:
            with serve(Path(folder) / "state", "--insecure-no-auth", "--source", f"qemu-dbus:{bus.address}") as served:
                base = served.url
                async with aiohttp.ClientSession() as http:
                    viewer = AiortcViewer(base, http) if viewer_kind == "aiortc" else ChromiumViewer(base, chromium)
                    await viewer.open()
                    try:
                        for run in range(runs + 1):
                            first, key, missed = await one_run(viewer, Path(folder), bus)
                            # the viewer settles on the last screen (the last frames, a periodic keyframe)
                            await asyncio.sleep(SETTLE)
                            presses_missed += missed  # the warm-up's too: what the guest does
                            if run:
                                first_frames.append(first)
                                key_to_frames.append(key)
                    finally:
                        await viewer.close()
        finally:
            bus.stop()
    return {
        "viewer": viewer_kind,
        "runs": runs,
        "cpus": os.cpu_count(),
        "qemu_start_to_first_frame_s": _summary(first_frames, 1, 3),
        "key_to_changed_frame_ms": _summary(key_to_frames, 1000, 1),
        "presses_missed_by_the_guest": presses_missed,
    }


def run(runs: int, viewer: str, chromium: str) -> dict[str, Any]:
    return asyncio.run(measure(runs, viewer, chromium))
