"""`python -m vgpustream` is the `vgpustream` command."""

from vgpustream.cli import main

raise SystemExit(main())
