"""The display side of a session: its source, capture thread, pacing, keyframe policy and encoder.

`CaptureLoop` owns all of it. Every call into a source runs on the loop's one capture thread; after
each step the loop publishes an immutable `Snapshot` of what the source said (state, planes, cursor),
which the API and metrics read without touching the source.
"""
