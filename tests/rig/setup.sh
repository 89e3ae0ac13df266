#!/bin/bash
# tests/rig/setup.sh: prepare the VFIO test rig on Debian 12 (as root, idempotent).
#
# The rig boots Debian's own kernel under QEMU with the kernel's sample mdev drivers, which implement
# the VFIO gfx-plane uAPI without any GPU: mbochs (dma-buf planes) and mdpy (region planes). This
# script installs QEMU and the kernel image, headers and source, and builds mbochs.ko and mdpy.ko out
# of tree from samples/vfio-mdev. Products go to $RIG (default ~/.cache/vgpustream-rig): the guest
# sees the host's files read-only, but not the host's /tmp.
set -euo pipefail
RIG=${RIG:-${XDG_CACHE_HOME:-$HOME/.cache}/vgpustream-rig}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$RIG"

PACKAGES=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 linux-source build-essential xz-utils kmod
          busybox-static cpio)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "rig: installing ${missing[*]}"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# the kernel release the metapackage points at, e.g. 6.1.0-41-amd64
KVER=$(dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/.*linux-image-\([^ ,]*\).*/\1/p')
[ -e "/boot/vmlinuz-$KVER" ] && [ -e "/lib/modules/$KVER/build/Makefile" ] ||
  { echo "rig: kernel $KVER or its headers are missing" >&2; exit 1; }
for option in VFIO VFIO_MDEV VFIO_IOMMU_TYPE1 DMA_SHARED_BUFFER; do
  grep -qE "^CONFIG_${option}=[ym]" "/boot/config-$KVER" || { echo "rig: CONFIG_$option is off" >&2; exit 1; }
done
echo "$KVER" > "$RIG/kver"

# samples/vfio-mdev from the matching source tarball, built out of tree
SOURCE=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -n 1)
TOP=$(basename "$SOURCE" .tar.xz)
BUILD=$RIG/build
STAMP="$(dpkg-query -W -f='${Version}' "$TOP") $KVER"
if [ "$(cat "$BUILD/.stamp" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  tar -xJf "$SOURCE" -C "$BUILD" --strip-components=3 "$TOP/samples/vfio-mdev/"
  echo 'obj-m := mbochs.o mdpy.o' > "$BUILD/Kbuild"
  # The 6.1 mbochs exports its dma-bufs with file flags 0 (O_RDONLY), so a userspace MAP_SHARED mmap
  # of them fails (EINVAL): do_mmap() drops VM_SHARED for a read-only file and mbochs_mmap_dmabuf()
  # insists on it. Real vGPU drivers (i915 GVT-g) export read-write; so does the rig's mbochs.
  sed -i 's|^\(\s*\)exp_info.priv = dmabuf;$|&\n\1exp_info.flags = O_RDWR;|' "$BUILD/mbochs.c"
  grep -q 'exp_info.flags = O_RDWR;' "$BUILD/mbochs.c" || { echo "rig: the mbochs patch did not apply" >&2; exit 1; }
  make -s -C "/lib/modules/$KVER/build" M="$BUILD" -j"$(nproc)" modules
  echo "$STAMP" > "$BUILD/.stamp"
fi
for module in mbochs mdpy; do
  modinfo -F vermagic "$BUILD/$module.ko" | grep -q "^$KVER " || { echo "rig: $module.ko is not for $KVER" >&2; exit 1; }
done
echo "rig: kernel $KVER, modules in $BUILD"
