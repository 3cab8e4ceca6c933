"""A mirror on 127.0.0.1 for the download tests, whose slowness is made of events, not of time.

``serve()`` yields a namespace: ``url``; ``files`` (path -> bytes served); ``requests`` (the
paths asked for, in order); and the paths that misbehave, each a set:

* ``stall``: answered once the test ends (or after 10 s): a mirror that times out;
* ``silent``: the connection is accepted and the request read, then nothing is sent until the
  test ends;
* ``hold``: the headers and the first half of the file are sent, then nothing until the test ends;
* ``trickle``: the headers, then one byte every 10 ms until the test ends or the client leaves:
  a mirror that never times out and never finishes (at most 100 bytes/s, however fast the machine).

``arrived`` is set when a ``silent`` or ``hold`` request has sent what it will send; ``auth``
maps a path prefix to the ``user:password`` that path requires (HTTP 401 otherwise).
"""

import base64
import contextlib
import http.server
import threading
import types
from collections.abc import Iterator


@contextlib.contextmanager
def serve() -> Iterator[types.SimpleNamespace]:
    done, arrived = threading.Event(), threading.Event()
    mirror = types.SimpleNamespace(
        files={}, requests=[], stall=set(), silent=set(), hold=set(), trickle=set(), auth={}, arrived=arrived
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            mirror.requests.append(self.path)
            if self.path in mirror.stall:
                done.wait(10)
            if self.path in mirror.silent:
                arrived.set()
                done.wait()
                return
            body = mirror.files.get(self.path)
            if not self._authorized():
                self.send_error(401)
            elif body is None:
                self.send_error(404)
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self._send(body)

        def _authorized(self) -> bool:
            needed = [v for k, v in mirror.auth.items() if self.path.startswith(k)]
            token = base64.b64encode(needed[0].encode()).decode() if needed else None
            return token is None or self.headers.get("Authorization") == f"Basic {token}"

        def _send(self, body: bytes) -> None:
            if self.path in mirror.hold:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                arrived.set()
                done.wait()
            elif self.path in mirror.trickle:
                for i in range(len(body)):
                    if done.wait(0.01):
                        return
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(body)

        def handle(self):
            with contextlib.suppress(ConnectionError):  # the client left: a test that stopped it
                super().handle()

        def log_message(self, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    mirror.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield mirror
    finally:
        done.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
