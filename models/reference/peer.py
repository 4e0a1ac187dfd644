#!/usr/bin/env python3
"""Runs peer.js in headless Chromium and prints its table: TF.js's WebAssembly backend on the
networks of Vigil's CPU models bench, at batch 1, so the two can be measured in one window.

    ~/.cache/vigil/venv/bin/python models/reference/peer.py [--threads 2] [--seconds 3]

Needs `npm ci` in models/reference (TF.js and face-api from npm), the weights that
scripts/fetch-assets puts in $VIGIL_ASSETS (default ~/.cache/vigil/assets), Debian's Chromium and
Playwright for Python (both installed by scripts/setup). The page is served cross-origin
isolated (COOP/COEP), which is what lets the WebAssembly backend run threads.
"""
import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ASSETS = Path(os.environ.get("VIGIL_ASSETS", Path.home() / ".cache" / "vigil" / "assets"))
WASM = HERE / "node_modules" / "@tensorflow" / "tfjs-backend-wasm" / "dist"


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves this folder, the assets under /assets/ and TF.js's .wasm files under /wasm/."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".json": "application/json",
    }

    def translate_path(self, path):
        path = path.split("?", 1)[0]
        for prefix, root in (("/assets/", ASSETS), ("/wasm/", WASM)):
            if path.startswith(prefix):
                return str(root / path[len(prefix):])
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("PEER_LOG"):
            print("serve: " + fmt % args, file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    for need, what in ((WASM, "run `npm ci --ignore-scripts` in models/reference"),
                       (ASSETS / "face-api", "run scripts/fetch-assets")):
        if not need.exists():
            sys.exit(f"peer: {need} is missing: {what}")
    chromium = os.environ.get("VIGIL_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        sys.exit("peer: chromium is not installed: run scripts/setup")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(HERE)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/peer.html?threads={args.threads}&seconds={args.seconds}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        # TF.js's threaded build sizes its worker pool from the core count at start
        # (hardwareConcurrency / 2, so one worker on a 2-core machine); report enough cores for
        # the pool to hold the threads asked for (setThreadsCount still caps what runs).
        page.add_init_script(
            "Object.defineProperty(navigator, 'hardwareConcurrency', "
            f"{{ get: () => {2 * max(args.threads, 1)} }});")
        page.on("console", lambda m: print(f"page: {m.text}", file=sys.stderr)
                if m.type == "error" else None)
        page.on("response", lambda r: print(f"page: {r.status} {r.url}", file=sys.stderr)
                if r.status >= 400 else None)
        page.goto(url)
        page.wait_for_function("window.peer !== undefined")
        result = page.evaluate("window.peer", )
        browser.close()
    server.shutdown()
    print(result["text"])
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
