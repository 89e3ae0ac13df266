"""The test suite (a package, so that tests/qemu is `tests.qemu` and does not hide QEMU's `qemu.qmp`)."""
