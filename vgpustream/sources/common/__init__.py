"""What more than one source uses, so that no source imports from another."""
