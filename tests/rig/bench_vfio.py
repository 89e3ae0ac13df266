"""`vgpustream bench pipeline` on a VFIO display at 1920x1080, beside the synthetic source, in the rig's VM.

Run it with `bash tests/rig/in-guest.sh "$(command -v python3)" tests/rig/bench_vfio.py [FRAMES]` (after
tests/rig/setup.sh). This process plays the VM: it holds an mbochs device, sets a 1920x1080 mode and
keeps drawing the synthetic source's moving page into video memory, as a guest redrawing its screen
would; the bench receives the device fd from it (`vfio-fd:`), as from a VMM. Both benches print JSON.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.vfio.mbochs import Mbochs
from tests.vfio.test_capture import serve_device_fd
from vgpustream.sources.synthetic import SyntheticSource
from vgpustream.sources.vfio.device import VfioDevice

RIG_BUILD = Path.home() / ".cache/vgpustream-rig/build"
WIDTH, HEIGHT = 1920, 1080


def bench(source: str, frames: int) -> str:
    command = [sys.executable, "-m", "vgpustream", "bench", "pipeline", "--source", source, "--frames", str(frames)]
    return subprocess.run([*command, "--json"], capture_output=True, text=True, check=True, timeout=900).stdout


def main(frames: int) -> None:
    subprocess.run(["modprobe", "-a", "vfio", "vfio_iommu_type1", "mdev"], check=True)
    if not Path("/sys/module/mbochs").exists():
        subprocess.run(["insmod", str(RIG_BUILD / "mbochs.ko")], check=True)
    name = str(uuid.uuid4())
    Path("/sys/class/mdev_bus/mbochs/mdev_supported_types/mbochs-large/create").write_text(name)
    device = VfioDevice.open_mdev(name)
    card = Mbochs(device)
    stop = threading.Event()
    try:
        card.set_mode(WIDTH, HEIGHT)
        page = SyntheticSource(WIDTH, HEIGHT, fps=240, pattern="text")

        def redraw() -> None:
            while not stop.is_set():
                if (frame := page.next_frame()) is not None:
                    card.show(frame.pixels)

        painter = threading.Thread(target=redraw, daemon=True)
        painter.start()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "vmm.sock"
            serve_device_fd(device, path)  # as the VMM that holds the device would
            print("vfio", bench(f"vfio-fd:unix:{path}", frames), end="", flush=True)
        stop.set()
        painter.join()
        print("synthetic", bench(f"synthetic:{WIDTH}x{HEIGHT}@240?pattern=text", frames), end="", flush=True)
    finally:
        stop.set()
        card.close()
        device.close()
        Path(f"/sys/bus/mdev/devices/{name}/remove").write_text("1")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
