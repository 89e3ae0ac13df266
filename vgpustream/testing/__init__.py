"""What the tests and `vgpustream bench` both drive a server with; not measurement code (that is bench/)."""

INSTALL_TEST_EXTRAS = "from a checkout of vgpustream, pip install -e '.[test]'"
"""How to get what the browser benches and the report need (vgpustream is not on a package registry)."""
