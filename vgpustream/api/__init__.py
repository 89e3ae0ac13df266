"""The HTTP side: WHEP signalling, the JSON API under /api/v1 and the web console's files."""
