#!/bin/bash
# tests/rig/in-guest.sh CMD [ARGS...]: run CMD as root in a throwaway VM and exit with its status.
#
# The VM boots the Debian kernel that setup.sh installed, under QEMU (TCG: this machine kind's
# /dev/kvm cannot boot a guest), with the host's / as its read-only root filesystem (virtio-9p), a
# fresh tmpfs on /tmp and /run (the current directory is shared on its own where it lies in them),
# and CMD's stdout and stderr carried back over virtio-serial ports.
# The current directory is kept. Works with stdin closed (CI). Exit 124: timeout; 125: the guest
# never reported a status (its console log goes to stderr).
# Environment: RIG (build folder), RIG_MEM (2G), RIG_CPUS (2), RIG_TIMEOUT (seconds, 900), RIG_QEMU_ARGS
# (more QEMU arguments, split on spaces: a display and devices, e.g. a sound card on `-display dbus`),
# RIG_APPEND (more kernel arguments, e.g. `video=Virtual-2:1024x768e` to enable a virtio-gpu's second output).
set -u
RIG=${RIG:-${XDG_CACHE_HOME:-$HOME/.cache}/vgpustream-rig}
KVER=$(cat "$RIG/kver" 2>/dev/null) || { echo "in-guest: run tests/rig/setup.sh first" >&2; exit 125; }
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

# --- initramfs: busybox and the modules needed to mount the host's root over virtio-9p ---------------
INITRD=$RIG/initramfs-$KVER.cpio.gz
if [ ! -s "$INITRD" ] || [ "$INITRD" -ot "$0" ]; then
  staging=$(mktemp -d)
  mkdir -p "$staging"/{bin,dev,proc,sys,newroot,modules}
  cp /bin/busybox "$staging/bin/busybox"
  for module in virtio_pci virtio_console 9pnet_virtio 9p; do
    modprobe -S "$KVER" --show-depends "$module"
  done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
    cp "$ko" "$staging/modules/" && basename "$ko" >> "$staging/modules/order"
  done
  cat > "$staging/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod "/modules/$m"; done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o ro,$opts,cache=loose hostroot /newroot || { echo "init: no host root" > /dev/ttyS0; poweroff -f; }
mount -t tmpfs -o mode=755 tmpfs /newroot/run && mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mkdir -p /newroot/run/rig && mount -t 9p -o $opts rigrun /newroot/run/rig
mount --move /proc /newroot/proc; mount --move /sys /newroot/sys; mount --move /dev /newroot/dev
exec switch_root /newroot /bin/bash /run/rig/stage2
INIT
  chmod 755 "$staging/init"
  (cd "$staging" && find . | cpio -o -H newc --quiet | gzip -1) > "$INITRD.new" && mv "$INITRD.new" "$INITRD"
  rm -rf "$staging"
fi

# --- the run folder, shared read-write with the guest as /run/rig ---------------------------------
RUN=$(mktemp -d /tmp/vgpustream-rig.XXXXXX)
trap 'rm -rf "$RUN"' EXIT
# the guest's /tmp and /run are fresh: a checkout there (CI clones into /tmp) comes in as its own share
{
  printf 'if [ ! -d %q ]; then mkdir -p %q && mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000 rigcwd %q; fi\n' \
    "$PWD" "$PWD" "$PWD"
  printf 'cd %q || exit 125\n' "$PWD"; printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$RUN/cmd"
cat > "$RUN/stage2" <<'STAGE2'
#!/bin/bash
# PID 1 in the guest: find the output ports, run the command, leave its status, power off
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
       PYTHONDONTWRITEBYTECODE=1
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd
ip link set lo up
out=/dev/ttyS0 err=/dev/ttyS0
for _ in $(seq 200); do
  for port in /sys/class/virtio-ports/vport*; do
    case "$(cat "$port/name" 2>/dev/null)" in
      rig.stdout) out=/dev/${port##*/} ;; rig.stderr) err=/dev/${port##*/} ;;
    esac
  done
  [ "$out" != /dev/ttyS0 ] && [ "$err" != /dev/ttyS0 ] && [ -c "$out" ] && [ -c "$err" ] && break
  sleep 0.05
done
bash /run/rig/cmd < /dev/null > "$out" 2> "$err"
echo $? > /run/rig/status.new && mv /run/rig/status.new /run/rig/status
sync
echo o > /proc/sysrq-trigger
sleep 10
STAGE2

# kernel: the ELF vmlinux inside Debian's XZ bzImage boots faster under TCG (no decompression)
KERNEL=/boot/vmlinuz-$KVER
VMLINUX=$RIG/vmlinux-$KVER
if [ ! -s "$VMLINUX" ]; then
  python3 - "$KERNEL" "$VMLINUX" <<'PY' || rm -f "$VMLINUX"
import lzma, sys
image = open(sys.argv[1], "rb").read()
start = image.find(b"\xfd7zXZ\x00")
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:]) if start >= 0 else b""
sys.exit(0 if elf[:4] == b"\x7fELF" and open(sys.argv[2], "wb").write(elf) else 1)
PY
fi
[ -s "$VMLINUX" ] && KERNEL=$VMLINUX

mkfifo "$RUN/out" "$RUN/err"
cat "$RUN/out" & OUT=$!
cat "$RUN/err" >&2 & ERR=$!
exec 7>"$RUN/out" 8>"$RUN/err"  # held open so the readers see end-of-file only when QEMU is done
timeout "${RIG_TIMEOUT:-900}" qemu-system-x86_64 7>&- 8>&- \
  -nodefaults -no-reboot -display none -vga none -monitor none \
  -machine pc -accel tcg,thread=multi -cpu max -m "${RIG_MEM:-2G}" -smp "${RIG_CPUS:-2}" \
  -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 quiet loglevel=4 panic=-1 vgpustream.rig=1 ${RIG_APPEND:-}" \
  -chardev file,id=console,path="$RUN/console.log" -serial chardev:console \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$RUN",mount_tag=rigrun,security_model=none \
  -virtfs local,path="$PWD",mount_tag=rigcwd,security_model=none,readonly=on \
  -device virtio-serial-pci ${RIG_QEMU_ARGS:-} \
  -chardev file,id=out,path="$RUN/out",append=on -device virtserialport,chardev=out,name=rig.stdout \
  -chardev file,id=err,path="$RUN/err",append=on -device virtserialport,chardev=err,name=rig.stderr \
  </dev/null >"$RUN/qemu.log" 2>&1
qemu=$?
exec 7>&- 8>&-
wait "$OUT" "$ERR"
[ "$qemu" = 124 ] && { echo "in-guest: timed out" >&2; exit 124; }
if [ ! -f "$RUN/status" ]; then
  { echo "in-guest: no status from the guest (qemu exit $qemu):"; tail -n 30 "$RUN/console.log" "$RUN/qemu.log"; } >&2
  exit 125
fi
exit "$(cat "$RUN/status")"
