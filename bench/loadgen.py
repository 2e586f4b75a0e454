"""A bounded HTTP/1.1 load generator for `labq bench --service`: N keep-alive connections on
loopback, each sending GETs back to back for a fixed time; every request has a deadline, and a
failure is counted (by kind) and answered with a fresh connection, never raised.

Written on asyncio streams rather than httpx.AsyncClient because the generator shares the
machine with the server it measures: with 50 connections httpx spent ~7 ms of CPU per request
in the client (measured), more than the API itself, so the figures measured the client. This
costs ~0.2 ms a request. It reads exactly what labq's API sends: a status line, headers, and a
body framed by Content-Length or chunked encoding.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> None:
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
        return
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> int:
    """One GET on an open keep-alive connection; returns the status code."""
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip()
    await _read_body(reader, headers)
    if headers.get(b"connection", b"").lower() == b"close":
        raise ConnectionResetError("server closed the connection")
    return status


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]) if lat else (lambda p: None)
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "requests": len(lat),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "p50_ms": q(0.50),
            "p90_ms": q(0.90),
            "p99_ms": q(0.99),
            "max_ms": lat[-1] if lat else None,
            "requests_per_s": len(lat) / self.seconds,
        }


async def run_load(
    host: str, port: int, paths: list[str], clients: int, seconds: float, timeout: float = 10.0
) -> LoadResult:
    """`clients` connections cycling through `paths` for `seconds`; a request in flight at the
    end is awaited (up to `timeout`) and counted."""
    result = LoadResult(clients, seconds)
    stop_at = time.monotonic() + seconds

    async def client(i: int) -> None:
        conn = None
        while time.monotonic() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                status = await asyncio.wait_for(get(*conn, host, path), timeout)
                if status != 200:
                    result.errors[f"HTTP {status}"] += 1
            except Exception as exc:  # counted, never fatal: the next request reconnects
                result.errors[
                    "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                ] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.05)
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return result
