"""The way back from a viewer to the guest: input events, clipboard, microphone and resize requests, validated
here and handed to the source's input sink."""
