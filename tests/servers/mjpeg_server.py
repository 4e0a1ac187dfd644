#!/usr/bin/env python3
"""MJPEG-over-HTTP test camera for Vigil's integration tests (stdlib only).

    python3 tests/servers/mjpeg_server.py --port 0 --frames /tmp/frames \
        [--fps 5] [--user U --password P]

Serves the *.jpg files of --frames in sorted order, looping forever. A
snapshot is the frame due at the current wall time (the index advances at
--fps, so successive snapshots differ); a stream starts at that frame and then
sends the next one every 1/fps seconds.

    GET /stream.mjpg   multipart/x-mixed-replace; boundary=frame, endless,
                       one image/jpeg part (with Content-Length) per 1/fps s
    GET /snapshot.jpg  the current frame (image/jpeg)
    GET /corrupt.jpg   200 image/jpeg whose body is not a decodable JPEG
    anything else      404

With --user, every request needs HTTP Basic credentials; missing or wrong
ones get 401 with `WWW-Authenticate: Basic realm="vigil-test"`.

Once listening it prints exactly one line to stdout,

    READY http://127.0.0.1:PORT

(the real port, also with --port 0). SIGTERM or SIGINT stops it with status 0.
Request logs go to stderr.
"""

import argparse
import base64
import hmac
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BOUNDARY = "frame"
# Starts like a JPEG (SOI + APP0 marker) so sniffers accept it, then garbage:
# no frame header, no scan, no EOI, so any decoder must reject it.
CORRUPT_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"this is not jpeg data " * 20


class Camera:
    def __init__(self, frames, fps):
        self.frames = frames
        self.fps = fps
        self.t0 = time.monotonic()
        self.stopping = threading.Event()

    def index(self, now=None):
        now = time.monotonic() if now is None else now
        return int((now - self.t0) * self.fps) % len(self.frames)

    def current(self):
        return self.frames[self.index()]


def make_handler(camera, auth):
    expected = None
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        expected = f"Basic {token}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "VigilTestMJPEG/1.0"
        timeout = 30  # socket timeout: a stalled client does not pin a thread forever

        def log_message(self, fmt, *args):
            sys.stderr.write("mjpeg_server: %s %s\n" % (self.address_string(), fmt % args))

        def _authorized(self):
            if expected is None:
                return True
            got = self.headers.get("Authorization", "")
            return hmac.compare_digest(got.strip().encode(), expected.encode())

        def _send_body(self, code, ctype, body, extra=()):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache, no-store")
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            if not self._authorized():
                self._send_body(401, "text/plain", b"unauthorized\n",
                                [("WWW-Authenticate", 'Basic realm="vigil-test"')])
                return
            path = urlsplit(self.path).path
            if path == "/snapshot.jpg":
                self._send_body(200, "image/jpeg", camera.current())
            elif path == "/corrupt.jpg":
                self._send_body(200, "image/jpeg", CORRUPT_JPEG)
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send_body(404, "text/plain", b"not found\n")

        def _stream(self):
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, no-store")
            self.send_header("Pragma", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            period = 1.0 / camera.fps
            deadline = time.monotonic()
            # Start at the current wall-clock frame, then step one frame per
            # part, so consecutive parts always differ.
            index = camera.index(deadline)
            try:
                while not camera.stopping.is_set():
                    jpeg = camera.frames[index]
                    index = (index + 1) % len(camera.frames)
                    head = (f"--{BOUNDARY}\r\n"
                            "Content-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n").encode()
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
                    deadline += period
                    delay = deadline - time.monotonic()
                    if delay > 0:
                        camera.stopping.wait(delay)
                    else:
                        deadline = time.monotonic()  # fell behind: don't burst
            except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                pass

    return Handler


def main():
    ap = argparse.ArgumentParser(description="MJPEG test camera (stdlib only)")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free one)")
    ap.add_argument("--frames", required=True, help="directory of .jpg frames")
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--user", default=None)
    ap.add_argument("--password", default=None)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    args = ap.parse_args()

    if args.fps <= 0:
        ap.error("--fps must be positive")
    if args.password is not None and args.user is None:
        ap.error("--password needs --user")
    try:
        names = sorted(n for n in os.listdir(args.frames)
                       if n.lower().endswith((".jpg", ".jpeg")))
    except OSError as err:
        print(f"mjpeg_server: error: cannot list {args.frames}: {err}", file=sys.stderr)
        sys.exit(2)
    if not names:
        print(f"mjpeg_server: error: no .jpg files in {args.frames}", file=sys.stderr)
        sys.exit(2)
    frames = []
    for n in names:
        with open(os.path.join(args.frames, n), "rb") as f:
            frames.append(f.read())

    camera = Camera(frames, args.fps)
    auth = (args.user, args.password or "") if args.user is not None else None
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(camera, auth))
    except OSError as err:
        print(f"mjpeg_server: error: cannot listen on {args.host}:{args.port}: {err}",
              file=sys.stderr)
        sys.exit(2)
    server.daemon_threads = True

    def on_signal(signum, _frame):
        camera.stopping.set()
        # shutdown() waits for serve_forever() to return, so not from this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    port = server.server_address[1]
    print(f"mjpeg_server: {len(frames)} frames from {args.frames} at {args.fps:g} fps"
          f"{', basic auth' if auth else ''}", file=sys.stderr, flush=True)
    print(f"READY http://{host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
