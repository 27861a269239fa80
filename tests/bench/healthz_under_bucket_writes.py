#!/usr/bin/env python3
"""Latency of `/healthz` while clients write 16 MiB bucket objects (issue 14, blocking file work).

Usage: healthz_under_bucket_writes.py HOST_BINARY [WRITERS] [SAMPLES]

Starts `HOST_BINARY serve` on the counter example (bucket `notes`) with a fresh data dir, measures
`/healthz` over one keep-alive connection with no load, then again while WRITERS threads (default
2) PUT 16 MiB objects in a loop, and prints median / p90 / max in milliseconds for both, and the writers' throughput.
"""

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port, samples):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)
    conn.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)], times[-1]


def writer(port, n, stop, counts):
    body = os.urandom(16 << 20)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    while not stop.is_set():
        conn.request("PUT", f"/v1/apps/counter/buckets/notes/big-{n}", body=body)
        response = conn.getresponse()
        response.read()
        assert response.status == 204, response.status
        counts[n] += 1
    conn.close()


def main():
    binary = sys.argv[1]
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [binary, "--data", data, "--cache", os.path.join(ROOT, "target/test-compiled-components"),
             "serve", "--listen", f"127.0.0.1:{port}", "-f", os.path.join(ROOT, "examples/counter/host.toml")],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(600):
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    time.sleep(0.1)
            idle = healthz(port, samples)
            stop, counts = threading.Event(), [0] * writers
            threads = [threading.Thread(target=writer, args=(port, n, stop, counts)) for n in range(writers)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(1)
            loaded = healthz(port, samples)
            stop.set()
            elapsed = time.perf_counter() - started
            for t in threads:
                t.join()
        finally:
            server.kill()
            server.wait()
    print(f"idle:   median {idle[0]:.2f} ms, p90 {idle[1]:.2f} ms, max {idle[2]:.2f} ms")
    print(f"{writers} writers: median {loaded[0]:.2f} ms, p90 {loaded[1]:.2f} ms, max {loaded[2]:.2f} ms"
          f" ({sum(counts)} objects of 16 MiB written, {sum(counts) * 16 / elapsed:.0f} MiB/s)")


if __name__ == "__main__":
    main()
