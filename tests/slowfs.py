"""A faulty disk for tests: a FUSE pass-through to a directory whose writes take `--delay` seconds each
for the first `--slow-for` seconds after mounting, then go at full speed; and which is read-only (every
change fails with EROFS, as ext4 answers once it aborted its journal) while the file `--read-only-while`
exists.

Run as its own process (`python -m tests.slowfs BACKING MOUNTPOINT --delay 1 --slow-for 8`); it serves
until unmounted. The writer blocked in write(2), or refused by it, is the real kernel path of such a disk.
"""

from __future__ import annotations

import argparse
import errno
import os
import time
from typing import Any

import mfusepy


class SlowPassThrough(mfusepy.Operations):
    use_ns = True

    def __init__(self, backing: str, delay: float, slow_for: float, read_only_while: str | None) -> None:
        self.backing = backing
        self.delay = delay
        self.slow_until = time.monotonic() + slow_for
        self.read_only_while = read_only_while

    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _changing(self) -> None:
        """Called by every operation that changes the disk: refused while it is read-only."""
        if self.read_only_while is not None and os.path.exists(self.read_only_while):
            raise mfusepy.FuseOSError(errno.EROFS)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except FileNotFoundError:
            raise mfusepy.FuseOSError(errno.ENOENT) from None
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
        return {key: getattr(st, key) for key in keys}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def mkdir(self, path: str, mode: int) -> None:
        self._changing()
        os.mkdir(self._real(path), mode)

    def rmdir(self, path: str) -> None:
        self._changing()
        os.rmdir(self._real(path))

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self._changing()
        return os.open(self._real(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)  # readable: SQLite maps its -shm

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            self._changing()
        return os.open(self._real(path), flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._changing()
        if time.monotonic() < self.slow_until:
            time.sleep(self.delay)
        return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        self._changing()
        os.truncate(self._real(path), length)

    def flush(self, path: str, fh: int) -> None:
        pass

    def fsync(self, path: str, datasync: bool, fh: int) -> None:
        self._changing()
        os.fsync(fh)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def unlink(self, path: str) -> None:
        self._changing()
        os.unlink(self._real(path))

    def rename(self, old: str, new: str) -> None:
        self._changing()
        os.rename(self._real(old), self._real(new))

    def chmod(self, path: str, mode: int) -> None:
        self._changing()
        os.chmod(self._real(path), mode)

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        self._changing()
        os.utime(self._real(path), ns=times)

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize", "f_namemax")
        return {key: getattr(st, key) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--slow-for", type=float, default=8.0)
    parser.add_argument("--read-only-while", help="a file: while it exists, every change fails with EROFS")
    args = parser.parse_args()
    operations = SlowPassThrough(args.backing, args.delay, args.slow_for, args.read_only_while)
    mfusepy.FUSE(operations, args.mountpoint, foreground=True, nothreads=False, allow_other=False)


if __name__ == "__main__":
    main()
