"""vgpustream: remote console for VMs with virtual GPUs."""
