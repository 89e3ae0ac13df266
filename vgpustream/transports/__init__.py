"""What carries a seat's stream to a browser and brings its input back: WebRTC (aiortc, with its STUN and
TURN servers) and a WebSocket."""
