"""Recording a session's encoded stream to fragmented MP4, without encoding anything again."""
