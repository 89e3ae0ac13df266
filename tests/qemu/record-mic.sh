#!/bin/sh
# Run in the rig's guest (tests/rig/in-guest.sh): load the HDA sound driver, open its recording input (a
# fresh ALSA mixer starts at 0), then record it for $1 seconds: a line "RECORDING", then raw 16-bit mono
# 48 kHz on standard output, a 20 ms period at a time, so that the host sees the samples as they come.
modprobe snd-hda-intel || exit 1
for _ in $(seq 200); do
  [ -e /dev/snd/pcmC0D0c ] && [ -e /dev/snd/controlC0 ] && break
  sleep 0.05
done
amixer scontrols >&2
for control in Capture Line Mic; do amixer -q sset "$control" 100% unmute cap 2>/dev/null; done
echo RECORDING
exec timeout "$1" arecord -q -D plughw:0,0 -f S16_LE -c 1 -r 48000 -t raw --period-time=20000 --buffer-time=200000
