"""Live view for headless boards: the demo's annotated frames as an MJPEG stream, a page to watch it, and
live stats, over HTTP from the standard library (no TensorFlow, nothing to install on the Pi).

    GET /             a page with the stream and the stats (refreshed twice a second)
    GET /stream.mjpg  multipart/x-mixed-replace JPEG frames
    GET /frame.jpg    the newest frame
    GET /stats.json   FPS, per-stage ms, the newest result (top classes, detections or classes in view)

The demo loop only hands over its newest frame (:meth:`LiveView.publish`: no copy, no encoding, no
wait). A viewer's thread, when it is ready for a frame, takes the newest one; the first viewer to ask
for a frame encodes it and the others reuse that JPEG, so each frame is encoded at most once, only when
someone watches, and a slow viewer skips frames instead of slowing the loop or the other viewers. A
stream sends at most :data:`STREAM_FPS` frames a second (TCP buffers would otherwise take frames as
fast as the loop makes them, and each costs an encode). It binds 127.0.0.1 unless another address is
given.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError

JPEG_QUALITY = 80
STREAM_FPS = 30  # the most a viewer's stream sends: a browser needs no more, and JPEGs cost CPU the loop needs
LOCAL = "127.0.0.1"
BOUNDARY = "edgecnnframe"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgecnn live</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:1em}img{max-width:100%}
pre{font-size:14px}</style></head>
<body><h3>edgecnn live: MODEL</h3><img id="stream" src="/stream.mjpg" alt="live stream">
<pre id="stats">waiting for frames...</pre>
<script>
async function tick() {
  try {
    const s = await (await fetch('/stats.json', {cache: 'no-store'})).json();
    const stages = Object.entries(s.stages_ms || {}).map(([k, v]) => `${k} ${v.toFixed(2)} ms`).join('  ');
    document.getElementById('stats').textContent =
      `${s.frames} frames  ${s.fps.toFixed(1)} FPS\\n${stages}\\n${(s.result || []).join('\\n')}`;
  } catch (e) {}
}
setInterval(tick, 500); tick();
</script></body></html>
"""


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (loopback) or ``HOST:PORT``; a bad value is a one-line user error."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or LOCAL
    try:
        number = int(port)
    except ValueError:
        raise EdgecnnError(
            f"--serve {text}: give PORT or HOST:PORT, e.g. --serve 8080 or --serve 0.0.0.0:8080"
        ) from None
    if not 0 <= number <= 65535:
        raise EdgecnnError(f"--serve {text}: port {number} is outside 0..65535")
    return host, number


class LiveView:
    """The HTTP server, the encoder thread and the newest frame, JPEG and stats."""

    def __init__(self, address: tuple[str, int], title: str = "") -> None:
        self.title = title
        self._frame: np.ndarray | None = None
        self._frame_id = 0
        self._jpeg = b""
        self._jpeg_id = 0
        self._stats: Callable[[], dict[str, Any]] = lambda: {"frames": 0, "fps": 0.0, "stages_ms": {}, "result": []}
        self.encoded = 0  # JPEGs made (at most one per published frame)
        self._changed = threading.Condition()
        self._encoding = threading.Lock()
        self._closed = False
        try:
            self.server = ThreadingHTTPServer(address, self._handler())
        except OSError as exc:
            raise EdgecnnError(
                f"--serve {address[0]}:{address[1]}: cannot listen ({exc.strerror}); pick another port"
            ) from None
        self.server.daemon_threads = True
        host, self.port = self.server.server_address[:2]
        self.host = host.decode() if isinstance(host, bytes) else host  # an AF_UNIX-typed field: str here
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    # -- the demo loop's side: never waits on viewers -------------------------------------------------
    def publish(self, frame: np.ndarray, stats: Callable[[], dict[str, Any]]) -> None:
        """Hand over the newest annotated frame (the loop does not touch it afterwards) and how to describe
        it (called only when a viewer asks for the stats)."""
        with self._changed:
            self._frame, self._frame_id, self._stats = frame, self._frame_id + 1, stats
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- the viewers' side -----------------------------------------------------------------------------
    def _next_jpeg(self, after: int, timeout: float = 5.0) -> tuple[bytes, int]:
        """The newest frame as JPEG once it is newer than ``after`` (frames in between are skipped); the
        first viewer to ask encodes it, the others reuse it. (b"", after) when nothing new came in time."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._frame_id > after, timeout)
            frame, frame_id = self._frame, self._frame_id
        if frame is None or frame_id <= after:
            return b"", after
        with self._encoding:
            if self._jpeg_id != frame_id:
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    self._jpeg, self._jpeg_id = jpeg.tobytes(), frame_id
                    self.encoded += 1
            return self._jpeg, self._jpeg_id

    # -- HTTP --------------------------------------------------------------------------------------------
    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (http.server's name)
                pass  # one line per request would flood the demo's output

            def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802  (http.server's name)
                path = self.path.split("?")[0]
                if path == "/":
                    self._send(PAGE.replace("MODEL", view.title).encode(), "text/html; charset=utf-8")
                elif path == "/stats.json":
                    with view._changed:
                        describe = view._stats
                    self._send(json.dumps(describe()).encode(), "application/json")
                elif path == "/frame.jpg":
                    jpeg, _ = view._next_jpeg(0)
                    self._send(jpeg, "image/jpeg") if jpeg else self._send(b"no frame yet", "text/plain", 503)
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(b"not found; try / /stream.mjpg /frame.jpg /stats.json", "text/plain", 404)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                sent, due = 0, time.monotonic()
                try:
                    while not view._closed:
                        time.sleep(max(0.0, due - time.monotonic()))
                        jpeg, sent_id = view._next_jpeg(sent)
                        if sent_id == sent:
                            continue  # nothing new within the timeout: wait again
                        sent, due = sent_id, time.monotonic() + 1 / STREAM_FPS
                        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer went away

        return Handler


def start_live_view(serve: str, title: str) -> LiveView:
    """Start serving; say where (and say it plainly when the address is not loopback)."""
    view = LiveView(parse_address(serve), title)
    if view.host not in (LOCAL, "localhost", "::1"):
        print(f"edgecnn demo: live view on {view.host}:{view.port}: reachable from other machines", file=sys.stderr)
    print(f"edgecnn demo: live view at {view.url}", file=sys.stderr)
    return view
