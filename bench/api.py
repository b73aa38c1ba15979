#!/usr/bin/env python3
"""api.py SOCKET MODE RUNS METHOD PATH [BODY]: times one Engine API call RUNS times on a unix
socket and prints the mean, median and p95 in microseconds.

api.py floor RUNS: the machine's floor for any such call: the mean, median and p95 round trip
of one byte between two processes over a socketpair (no daemon at all). On a VM whose idle
CPUs halt, most of it is the cross-CPU wake-up of the other side, which every daemon pays
twice per request.

MODE is `keepalive` (one connection for every call, as the SDKs and the docker CLI's own HTTP
transport use it) or `fresh` (a new connection per call). The clock runs from just before the
request is written (after connect, for `fresh` too) to the last byte of the response; no
process start-up and no client library is counted, only the daemon's turn-around.

A `POST /containers/{id}/exec` path with BODY is the exec case: each run creates the exec,
then starts it (`{"Detach":false}`) and reads its output to the end, and the time is the sum.
"""
import json
import os
import socket
import statistics
import sys
import time


class Conn:
    """A minimal HTTP/1.1 client on a unix socket: Content-Length and chunked bodies, and
    responses that end with the connection (a hijacked exec stream)."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.buf = b""

    def connect(self):
        self.close()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self, method, path, body=None):
        """(status, body bytes, keeps the connection)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: d\r\n"
        data = b""
        if body is not None:
            data = body.encode()
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        self.sock.sendall(head.encode() + data)
        status = int(self._line().split()[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                out += self._exact(size)
                self._exact(2)
            return status, out, headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            return status, self._exact(int(headers["content-length"])), \
                headers.get("connection", "").lower() != "close"
        # Neither: the body runs to the end of the connection (a raw stream).
        out = self.buf
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            out += chunk
        self.buf = b""
        return status, out, False


def summary(times):
    """mean, median and p95 of microsecond figures, as one line."""
    times = sorted(times)
    p95 = times[min(len(times) - 1, max(0, int(0.95 * len(times) + 0.999) - 1))]
    return f"{statistics.mean(times):.0f} {statistics.median(times):.0f} {p95:.0f}"


def floor(runs):
    """Round trips of one byte to a forked echo process."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        while True:
            data = b.recv(16)
            if not data:
                os._exit(0)
            b.sendall(data)
    b.close()
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        a.sendall(b"x")
        a.recv(16)
        times.append((time.perf_counter() - t0) * 1e6)
    a.close()
    os.waitpid(pid, 0)
    print(summary(times[1:]))
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "floor":
        return floor(int(sys.argv[2]))
    if len(sys.argv) < 6 or sys.argv[2] not in ("keepalive", "fresh"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    sock, mode, runs, method, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], \
        sys.argv[5]
    body = sys.argv[6] if len(sys.argv) > 6 else None
    is_exec = method == "POST" and path.endswith("/exec")
    conn = Conn(sock)
    conn.connect()
    times = []
    last = b""

    def call(m, p, b):
        nonlocal last
        if mode == "fresh" or conn.sock is None:
            conn.connect()
        t0 = time.perf_counter()
        status, last, keep = conn.request(m, p, b)
        dt = time.perf_counter() - t0
        if not keep:
            conn.close()
        if status >= 300:
            raise SystemExit(f"{m} {p}: HTTP {status}: {last[:200]!r}")
        return dt

    # One call first, untimed, so both daemons start from a warm connection and cache.
    for timed in [False] + [True] * runs:
        dt = call(method, path, body)
        if is_exec:
            exec_id = json.loads(last)["Id"]
            dt += call("POST", f"/exec/{exec_id}/start", '{"Detach":false}')
        if timed:
            times.append(dt * 1e6)
    conn.close()
    print(summary(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
