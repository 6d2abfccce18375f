"""A real HTTP collector on 127.0.0.1 for tests: records every request and
answers with scripted responses (status, headers, body, delay, or a raw
misbehaviour)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional


def stop_accept_loop(sock: socket.socket, thread: threading.Thread) -> None:
    """Ends a raw server's accept loop before its socket is closed.

    Closing alone is not enough: a thread that has just read the socket's
    file descriptor number, or loops back to accept(), can call accept() on
    whatever socket gets that number next. Seen once in a full run: a later
    test's collector lost a report to an old fake proxy, which answered it
    with its 502. shutdown() wakes a blocked accept(); the join makes sure the
    thread is out before the number is freed."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    thread.join(10)
    assert not thread.is_alive(), "the accept loop did not end"
    sock.close()


def read_request_body(conn: socket.socket) -> Optional[bytes]:
    """Reads one HTTP request with a Content-Length from a raw connection and
    returns its body; None when the peer closed or timed out first."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return body


class Proxy:
    """Records request lines and headers; answers every request with `answer`."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    self.requests.append(data)
                    conn.sendall(self.answer)
        except OSError:
            pass

    def close(self):
        stop_accept_loop(self.sock, self.thread)


@dataclass
class Request:
    method: str
    path: str
    headers: Dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    #: Write this many bytes of body (for an oversized response), ignoring `body`.
    huge: int = 0


class Collector:
    """Use as a context manager. `replies` is consumed in order; when empty,
    `default` answers."""

    def __init__(self, default: Optional[Reply] = None):
        self.requests: List[Request] = []
        #: For each `huge` reply: how many body bytes the server managed to
        #: write before the client closed the connection (or all of them).
        self.huge_written: List[int] = []
        self.replies: List[Reply] = []
        self.default = default or Reply()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with collector._lock:
                    collector.requests.append(Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    reply = collector.replies.pop(0) if collector.replies else collector.default
                    collector._arrived.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    size = reply.huge or len(reply.body)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    if reply.huge:
                        chunk = b"x" * 65536
                        sent = 0
                        try:
                            while sent < reply.huge:
                                self.wfile.write(chunk)
                                sent += len(chunk)
                        finally:
                            with collector._lock:
                                collector.huge_written.append(sent)
                                collector._arrived.notify_all()
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST
            do_PUT = do_POST

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/report"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Collector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> List[Request]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            return list(self.requests)


def free_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
