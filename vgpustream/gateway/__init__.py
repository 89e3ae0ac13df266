"""`vgpustream gateway`: one endpoint for a cluster of hosts, and no state of its own.

A control plane calls the gateway with the `/api/v1` it knows from a host; the gateway finds the host
that holds each session (`nodes`: static `--node NAME=URL`, or the DaemonSet's headless Service in DNS)
and relays the call with that host's operator token (`hosts`). Viewers' signalling goes the same way
(`signalling`: WHEP, and the WebSocket transport), their WebRTC media straight to the host. Any replica
can answer any request: what one remembers (the sessions each host had when it last answered) only
fills the list while a host does not answer.
"""
