"""vgpustream: remote console for VMs with virtual GPUs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vgpustream")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
