#!/usr/bin/python3
"""Looping RTSP test camera for Vigil's integration tests.

Serves a video file over RTSP with GStreamer's RTSP server, re-encoded live
(H.264 or H.265) and looping forever, so a test can run longer than the clip.

Run it with the system interpreter (it needs the `gi` bindings):

    /usr/bin/python3 tests/servers/rtsp_server.py --port 8554 \
        --file ~/.cache/vigil/assets/images/vtest.avi [--codec h264|h265] [--fps N]

Once the server listens it prints exactly one line to stdout,

    READY rtsp://127.0.0.1:PORT/stream

and then serves until SIGTERM or SIGINT (exit status 0). Diagnostics go to
stderr. Startup errors (missing file, undecodable file, missing encoder, port
in use) exit with status 2 and a message on stderr.

Design: every client gets its own media (the factory is not shared). A media
pipeline is `appsrc ! videoconvert ! encoder ! payloader`; the appsrc is fed by
a private decode pipeline (`filesrc ! decodebin ! videoconvert [! videorate]
! appsink sync=true`) which paces the raw frames at the clip's rate and seeks
itself back to the start on EOS. The appsrc is live and stamps each frame with
the media's running time when it is taken, so looping never produces a
timestamp discontinuity or an EOS on the RTSP side.
"""

import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstPbutils", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstApp, GstPbutils, GstRtspServer, GstVideo  # noqa: E402,F401


def log(msg):
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"error: {msg}")
    sys.exit(2)


def probe_video(path):
    """Return (fps as a float, duration in seconds or None) of the file's video."""
    try:
        discoverer = GstPbutils.Discoverer.new(15 * Gst.SECOND)
        info = discoverer.discover_uri(Gst.filename_to_uri(path))
    except GLib.Error as err:
        fail(f"cannot read {path}: {err.message}")
    streams = info.get_video_streams()
    if not streams:
        fail(f"{path} has no video stream")
    if streams[0].is_image():
        fail(f"{path} is a still image, not a video")
    num, den = streams[0].get_framerate_num(), streams[0].get_framerate_denom()
    fps = num / den if num > 0 and den > 0 else 0.0
    duration = info.get_duration()
    seconds = duration / Gst.SECOND if duration != Gst.CLOCK_TIME_NONE else None
    return fps, seconds


class Feeder:
    """Decodes the file in its own pipeline, loops it, and pushes raw frames
    into one media's appsrc, paced in real time by the appsink clock sync."""

    counter = 0
    active = set()
    lock = threading.Lock()

    def __init__(self, path, fps, appsrc):
        with Feeder.lock:
            Feeder.counter += 1
            self.id = Feeder.counter
        self.appsrc = appsrc
        self.caps = None
        self.loops = 0
        self.frames = 0
        self.stopped = False
        rate = f" ! videorate ! video/x-raw,framerate={fps}/1" if fps else ""
        self.pipeline = Gst.parse_launch(
            "filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=I420"
            f"{rate} ! appsink name=sink sync=true max-buffers=2 drop=false emit-signals=true"
        )
        self.pipeline.get_by_name("file").set_property("location", path)
        sink = self.pipeline.get_by_name("sink")
        sink.connect("new-sample", self._on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        self._bus_handler = bus.connect("message", self._on_message)

    def start(self):
        with Feeder.lock:
            Feeder.active.add(self)
        self.pipeline.set_state(Gst.State.PLAYING)
        log(f"feeder {self.id} started ({len(Feeder.active)} active)")

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        bus = self.pipeline.get_bus()
        bus.disconnect(self._bus_handler)
        bus.remove_signal_watch()
        self.pipeline.set_state(Gst.State.NULL)
        with Feeder.lock:
            Feeder.active.discard(self)
        log(f"feeder {self.id} stopped after {self.frames} frames, "
            f"{self.loops} loops ({len(Feeder.active)} active)")

    def _on_sample(self, sink):
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        caps = sample.get_caps()
        if self.caps is None or not caps.is_equal(self.caps):
            self.caps = caps
            self.appsrc.set_caps(caps)
        # A fresh buffer (sharing the memory) without timestamps: the live
        # appsrc stamps it with the media's running time (do-timestamp).
        buf = sample.get_buffer().copy()
        buf.pts = Gst.CLOCK_TIME_NONE
        buf.dts = Gst.CLOCK_TIME_NONE
        buf.offset = Gst.BUFFER_OFFSET_NONE
        self.appsrc.push_buffer(buf)
        self.frames += 1
        # FLUSHING (media not running yet / any more) is not an error for us;
        # keep decoding so the clip position advances with wall time.
        return Gst.FlowReturn.OK

    def _on_message(self, bus, msg):
        if self.stopped:
            return
        if msg.type == Gst.MessageType.EOS:
            self.loops += 1
            if not self.pipeline.seek_simple(
                Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0
            ):
                log(f"feeder {self.id}: seek back to start failed, restarting")
                self.pipeline.set_state(Gst.State.READY)
                self.pipeline.set_state(Gst.State.PLAYING)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            log(f"feeder {self.id} error: {err.message} ({dbg})")
            self.appsrc.end_of_stream()
            self.stop()


def main():
    ap = argparse.ArgumentParser(description="Looping RTSP test server (GStreamer)")
    ap.add_argument("--port", type=int, required=True,
                    help="TCP port to listen on (0 lets the OS pick one)")
    ap.add_argument("--file", required=True, help="video file to serve")
    ap.add_argument("--path", default="/stream", help="mount path (default /stream)")
    ap.add_argument("--codec", choices=("h264", "h265"), default="h264")
    ap.add_argument("--fps", type=int, default=None,
                    help="output frame rate (default: the file's own rate)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    args = ap.parse_args()

    Gst.init(None)

    path = os.path.abspath(os.path.expanduser(args.file))
    if not os.path.isfile(path):
        fail(f"no such file: {path}")
    if args.fps is not None and args.fps <= 0:
        fail("--fps must be positive")
    mount = args.path if args.path.startswith("/") else "/" + args.path

    if args.codec == "h264":
        needed = ("x264enc", "rtph264pay")
    else:
        needed = ("x265enc", "rtph265pay")
    for name in needed + ("appsrc", "decodebin", "videoconvert", "videorate"):
        if Gst.ElementFactory.find(name) is None:
            hint = " (Debian: gstreamer1.0-plugins-bad)" if name == "x265enc" else ""
            fail(f"GStreamer element '{name}' is not available{hint}; "
                 f"cannot serve --codec {args.codec}")

    src_fps, duration = probe_video(path)
    out_fps = args.fps or src_fps or 25.0
    gop = max(1, round(out_fps))
    log(f"{path}: {src_fps:g} fps, {duration if duration is not None else '?'} s; "
        f"serving {args.codec} at {out_fps:g} fps, keyframe every {gop} frames")

    appsrc = ("appsrc name=src is-live=true format=time do-timestamp=true "
              "leaky-type=downstream max-buffers=3")
    if args.codec == "h264":
        enc = (f"x264enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bframes=0 "
               "! video/x-h264,profile=constrained-baseline "
               "! rtph264pay name=pay0 pt=96 config-interval=1")
    else:
        enc = (f"x265enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} log-level=error "
               "! rtph265pay name=pay0 pt=96 config-interval=1")
    launch = f"( {appsrc} ! videoconvert ! {enc} )"

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)  # one media pipeline per client

    def on_media_configure(_factory, media):
        src = media.get_element().get_by_name("src")
        feeder = Feeder(path, args.fps, src)
        media.connect("unprepared", lambda _m: feeder.stop())
        feeder.start()

    factory.connect("media-configure", on_media_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(mount, factory)
    def on_play(_client, ctx):
        # The first frame a new client receives is usually not a keyframe
        # (the encoder's initial IDR is spent while the media prerolls), so
        # ask for one now rather than make the client wait up to a GOP.
        try:
            enc = ctx.media.get_element().get_by_name("enc")
        except AttributeError:
            return
        if enc is not None:
            event = GstVideo.video_event_new_upstream_force_key_unit(
                Gst.CLOCK_TIME_NONE, True, 0)
            enc.get_static_pad("src").send_event(event)

    def on_client(_server, client):
        log(f"client connected from {client.get_connection().get_ip()}")
        client.connect("play-request", on_play)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        fail(f"cannot listen on {args.host}:{args.port} (port in use?)")
    port = server.get_bound_port()

    # Drop sessions of clients that vanished without TEARDOWN.
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: pool.cleanup() >= 0)

    loop = GLib.MainLoop()

    def on_signal(signame):
        log(f"{signame}, shutting down")
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, on_signal, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, on_signal, "SIGINT")

    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    print(f"READY rtsp://{host}:{port}{mount}", flush=True)
    loop.run()

    with Feeder.lock:
        feeders = list(Feeder.active)
    for feeder in feeders:
        feeder.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: GStreamer streaming threads of client media
    # may still be running and would otherwise call into a dying interpreter.
    os._exit(0)


if __name__ == "__main__":
    main()
