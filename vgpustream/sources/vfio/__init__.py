"""Capture through the Linux VFIO gfx-plane uAPI, the way QEMU's hw/vfio/display.c does, vendor-neutral."""
