"""Pictures and sound as the encoders see them: pixel formats, conversion bindings, the frame stamp, the
video and sound encoders, the renditions a session encodes, and thumbnails."""
