#!/bin/sh
# Run in the rig's guest (tests/rig/in-guest.sh): load the HDA sound driver, turn its mixer up and
# unmute it (a fresh ALSA mixer starts muted at 0), then play a 440 Hz sine for $1 seconds.
modprobe snd-hda-intel || exit 1
for _ in $(seq 200); do
  [ -e /dev/snd/pcmC0D0p ] && [ -e /dev/snd/controlC0 ] && break
  sleep 0.05
done
amixer scontrols
for control in Master PCM; do amixer -q sset "$control" 100% unmute 2>/dev/null; done
exec timeout "$1" speaker-test -t sine -f 440 -c 2 -r 48000 -l 0 >/dev/null
