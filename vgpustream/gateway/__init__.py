"""`vgpustream gateway`: one endpoint for a cluster of hosts, and no state of its own.

A control plane calls the gateway with the `/api/v1` it knows from a host; the gateway finds the host
that holds each session (`nodes`: static `--node NAME=URL`; `dns`: the DaemonSet's headless Service) and
relays the call with that host's operator token (`hosts`). Viewers' signalling goes the same way
(`signalling`: WHEP, and the WebSocket transport), their WebRTC media straight to the host; the console
links it mints (`api`) point at it, and with a signing key are tokens it signs that hosts check offline
(vgpustream.control.signedtokens). Any replica can answer any request: what one remembers (the sessions each host
listed last) only fills the list while a host does not answer, and tells a search where to ask first.
"""
