"""What the tests and `vgpustream bench` both drive a server with; not measurement code (that is bench/)."""
