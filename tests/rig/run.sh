#!/bin/bash
# tests/rig/run.sh [PYTEST ARGS...]: the VFIO tests, in the rig's VM, against mbochs and mdpy.
# Prepares the rig (setup.sh), then runs `pytest -m vfio tests/vfio` in the guest with this
# machine's Python (the guest shares the host's files) and exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/rig/setup.sh
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
exec bash tests/rig/in-guest.sh "$PYTHON" -m pytest -p no:cacheprovider -m vfio tests/vfio "$@"
