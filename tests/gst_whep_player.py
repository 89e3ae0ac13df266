"""A WHEP player built on GStreamer's webrtcbin: POST an offer, play, count the decoded frames, DELETE.

Run by Debian's /usr/bin/python3 (whose python3-gi has GStreamer's bindings), never imported by the
tests, which run it as a subprocess: `gst_whep_player.py URL TOKEN SECONDS` prints one JSON line,
{"frames": n, "width": w, "height": h, "delete_status": s}, and exits 0, or prints an error and exits 1.
It offers only loopback host candidates, as every peer in the tests' network namespace does.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402 - versions must be chosen first

H264 = "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1"
DECODE = "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=frames"
DEADLINE_S = 30
HOST_ADDRESS = "127.0.0.1"


class Player:
    """One webrtcbin receiving one H.264 video track from a WHEP endpoint."""

    def __init__(self, url: str, token: str, seconds: float) -> None:
        self.url, self.token, self.seconds = url, token, seconds
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.Pipeline()
        self.webrtc = Gst.ElementFactory.make("webrtcbin")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.webrtc)
        self.pipeline.connect("deep-element-added", self._on_element_added)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering_state)
        self.webrtc.connect("pad-added", self._on_pad_added)
        self.webrtc.emit(
            "add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(H264)
        )
        self.pipeline.get_bus().add_signal_watch()
        self.pipeline.get_bus().connect("message::error", self._on_error)
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.location: str | None = None
        self.error: str | None = None
        self.posted = False

    def run(self) -> dict[str, object]:
        self.pipeline.set_state(Gst.State.PLAYING)
        GLib.timeout_add_seconds(DEADLINE_S, self._fail, f"no result within {DEADLINE_S} s")
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)
        if self.error is not None:
            raise RuntimeError(self.error)
        return {"frames": self.frames, "width": self.size and self.size[0], "height": self.size and self.size[1]}

    def _on_element_added(self, _bin: Gst.Bin, _parent: Gst.Bin, element: Gst.Element) -> None:
        # libnice gathers on every interface but loopback, and the tests' namespace has only loopback.
        # Its agent is reached through webrtcbin's nicesrc: webrtcbin's own ice-agent property hands
        # Python a reference it does not own (GStreamer 1.22).
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "nicesrc":
            address = Nice.Address.new()
            address.set_from_string(HOST_ADDRESS)
            element.get_property("agent").add_local_address(address)

    def _fail(self, message: str) -> bool:
        self.error = self.error or message
        self.loop.quit()
        return False

    def _on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self._fail(f"{error.message} ({debug})")

    def _on_negotiation_needed(self, webrtc: Gst.Element) -> None:
        webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(self._on_offer))

    def _on_offer(self, promise: Gst.Promise) -> None:
        promise.wait()
        reply = promise.get_reply()  # owns the offer: it must outlive the offer's use
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def _on_gathering_state(self, webrtc: Gst.Element, _spec: object) -> None:
        # WHEP without trickle: the offer goes out once it holds every candidate
        if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self._post_offer)

    def _post_offer(self) -> bool:
        if self.posted:
            return False
        self.posted = True
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            self.url,
            data=offer.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = response.read().decode()
                self.location = urllib.parse.urljoin(self.url, response.headers["Location"])
        except urllib.error.HTTPError as exc:
            return self._fail(f"POST answered {exc.code}: {exc.read()[:300]!r}")
        except OSError as exc:
            return self._fail(f"POST failed: {exc}")
        _, sdp = GstSdp.SDPMessage.new()
        GstSdp.sdp_message_parse_buffer(answer.encode(), sdp)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def _on_pad_added(self, _webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decode = Gst.parse_bin_from_description(DECODE, True)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))
        sink = decode.get_by_name("frames")
        sink.set_property("emit-signals", True)
        sink.set_property("sync", False)
        sink.connect("new-sample", self._on_sample)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        structure = sample.get_caps().get_structure(0)
        if self.frames == 0:
            # play for `seconds` from the first decoded frame on
            GLib.timeout_add(int(self.seconds * 1000), self._stop)
        self.frames += 1
        self.size = (structure.get_value("width"), structure.get_value("height"))
        return Gst.FlowReturn.OK

    def _stop(self) -> bool:
        self.loop.quit()
        return False

    def leave(self) -> int | None:
        """DELETE the viewer's resource, as a player does when it stops; its status."""
        if self.location is None:
            return None
        request = urllib.request.Request(
            self.location, method="DELETE", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


def main() -> int:
    url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    Gst.init(None)
    player = Player(url, token, seconds)
    try:
        result = player.run()
    except RuntimeError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    result["delete_status"] = player.leave()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
