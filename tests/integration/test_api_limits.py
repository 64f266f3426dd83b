"""Hostile clients against a real `runqueue serve`: oversized heads, slow heads and bodies,
idle connections, a flood of them beside a normal user, spoofed and secret-bearing access
log lines, and an unexpected error. The server runs with small timeouts (2 s) so that each
bound is seen in a few seconds."""

from __future__ import annotations

import functools
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_support import ServerProcess, api_server
from tests.integration.conftest import create_key

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_HEADER_BYTES = 8192
LATE = 1.5  # a close may come this much after its bound (a loaded 2-core machine)
HUGE_HEADER = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def limited(api_backend, api_worker, tmp_path_factory) -> Iterator[ServerProcess]:  # noqa: ANN001
    """`runqueue serve` with 2 s head and body timeouts, an 8 KiB head, the access log on,
    and the `broken` graph (tests/api_app.py) registered on the server alone."""
    settings = api_backend.settings.with_overrides(
        api_header_timeout_seconds=HEADER_TIMEOUT,
        api_body_timeout_seconds=BODY_TIMEOUT,
        api_max_header_bytes=MAX_HEADER_BYTES,
        imports="tests.api_app:register_broken",
    )
    log = Path(tmp_path_factory.mktemp("api-limits")) / "api.log"
    process = api_server(settings, log, log_level="info").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def bob(api_backend, limited) -> httpx.Client:  # noqa: ANN001
    key = create_key(api_backend, "bob")
    return httpx.Client(base_url=limited.url, headers={"x-api-key": key}, timeout=30)


# -- raw clients -----------------------------------------------------------------------------


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def head(path: str = "/threads/search", method: str = "POST", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}".encode()


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def trickle(sock: socket.socket, pieces: Iterator[bytes], interval: float) -> tuple[float, bytes]:
    """Send one piece every `interval` seconds until the server answers or closes: the
    seconds that took, and what it sent (b"" for a bare close)."""
    started = time.monotonic()
    sock.settimeout(interval)
    for piece in pieces:
        try:
            sock.sendall(piece)
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, b""
        if answer:
            answer += read_until_closed(sock)
        return time.monotonic() - started, answer
    raise AssertionError("the server never closed the connection")


def slowloris(server: ServerProcess) -> tuple[float, bytes]:
    """A head sent one byte every 0.5 s (never complete in time)."""
    sock = connect(server)
    with sock:
        data = head() + b"x-padding: " + b"a" * 200
        return trickle(sock, (data[i : i + 1] for i in range(len(data))), 0.5)


def idle(server: ServerProcess) -> tuple[float, bytes]:
    """A connection that never sends a byte."""
    sock = connect(server)
    with sock:
        started = time.monotonic()
        answer = read_until_closed(sock)
        return time.monotonic() - started, answer


def slow_body(server: ServerProcess) -> tuple[float, bytes]:
    """A whole head, then a 100-byte body one byte a second."""
    sock = connect(server)
    with sock:
        sock.sendall(head(extra="content-type: application/json\r\ncontent-length: 100\r\n\r\n"))
        return trickle(sock, (b" " for _ in range(100)), 1.0)


def slow_chunked_body(server: ServerProcess) -> tuple[float, bytes]:
    """A whole head, then a chunked body, one 1-byte chunk every 0.5 s."""
    sock = connect(server)
    with sock:
        sock.sendall(
            head(extra="content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        )
        return trickle(sock, (b"1\r\n \r\n" for _ in range(100)), 0.5)


@functools.cache
def huge_key() -> bytes:
    return b"k" * HUGE_HEADER  # one copy, shared by every sender


def huge_header(server: ServerProcess) -> tuple[float, bytes]:
    """A 32 MB x-api-key, sent as fast as the server takes it."""
    sock = connect(server)
    with sock:
        started = time.monotonic()
        try:
            sock.sendall(head(method="GET", extra="x-api-key: "))
            sock.sendall(huge_key())
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
        return time.monotonic() - started, answer


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def detail_of(answer: bytes) -> str:
    return json.loads(answer.partition(b"\r\n\r\n")[2])["detail"]


def in_parallel(*calls: Callable[[], tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    results: list[tuple[float, bytes] | BaseException] = [AssertionError("no answer")] * len(calls)

    def call(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - raised below, in the test's thread
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def rss_kib(pid: int) -> int:
    """VmRSS of the process and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier.extend(children)
    total = 0
    for member in family:
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


# -- the head ----------------------------------------------------------------------------------


def test_an_oversized_head_is_refused_at_once_and_holds_no_memory(
    limited,
    record_property,  # noqa: ANN001
) -> None:
    sock = connect(limited)
    with sock:
        sock.sendall(head(method="GET", extra="x-padding: " + "a" * MAX_HEADER_BYTES + "\r\n\r\n"))
        answer = read_until_closed(sock)
    assert status_of(answer) == 431, answer[:200]
    assert "over 8192 bytes" in detail_of(answer)
    huge_header(limited)  # warm up: the first connection of a kind allocates a little for good

    peak = baseline = rss_kib(limited.pid)
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_kib(limited.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = in_parallel(*[lambda: huge_header(limited)] * 10)
    finally:
        sampling = False
        sampler.join()
    for seconds, answer in results:
        assert seconds < 5, seconds
        assert answer == b"" or status_of(answer) == 431, answer[:200]
    growth_mib = (max(peak, rss_kib(limited.pid)) - baseline) / 1024
    figure = f"FIGURE api-huge-headers connections=10 rss_growth_mib={growth_mib:.1f}"
    record_property("figure", figure)
    assert growth_mib < 8, growth_mib


def test_slow_heads_and_idle_connections_are_closed_at_the_header_timeout(limited) -> None:  # noqa: ANN001
    def idle_after_a_response() -> tuple[float, bytes]:
        sock = connect(limited)
        with sock:
            sock.sendall(head("/ok", "GET", "\r\n"))
            sock.settimeout(10)
            first = b""
            while not first.endswith(b'{"ok":true}'):
                first += sock.recv(65536)
            assert status_of(first) == 200, first
            started = time.monotonic()
            rest = read_until_closed(sock)
            return time.monotonic() - started, rest

    results = in_parallel(lambda: slowloris(limited), lambda: idle(limited), idle_after_a_response)
    for (seconds, answer), kind in zip(results, ("slowloris", "idle", "idle after"), strict=True):
        assert answer == b"", (kind, answer)
        assert HEADER_TIMEOUT - 0.2 <= seconds <= HEADER_TIMEOUT + LATE, (kind, seconds)


def test_slow_bodies_answer_408_at_the_body_timeout(limited, bob) -> None:  # noqa: ANN001
    before = bob.post("/threads/search", json={}).json()
    results = in_parallel(lambda: slow_body(limited), lambda: slow_chunked_body(limited))
    for (seconds, answer), kind in zip(results, ("slow body", "slow chunks"), strict=True):
        assert status_of(answer) == 408, (kind, answer[:300])
        assert b"connection: close" in answer.lower(), (kind, answer[:300])
        assert "within 2 s" in detail_of(answer), kind
        assert BODY_TIMEOUT - 0.2 <= seconds <= BODY_TIMEOUT + LATE, (kind, seconds)
    assert bob.post("/threads/search", json={}).json() == before


def test_a_normal_user_keeps_their_latency_while_hostile_clients_hold_connections(
    limited,
    bob,
    record_property,  # noqa: ANN001
) -> None:
    def p50() -> float:
        times = []
        for _ in range(30):
            started = time.perf_counter()
            assert bob.post("/threads/search", json={}).status_code == 200
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    p50()  # warm up
    quiet = p50()
    stop = threading.Event()
    attacks = [slowloris, idle, slow_body, slow_chunked_body, huge_header] * 2

    def attacker(attack: Callable[[ServerProcess], tuple[float, bytes]]) -> None:
        while not stop.is_set():  # each closed connection is opened again at once
            attack(limited)
            time.sleep(0.05)

    threads = [threading.Thread(target=attacker, args=(a,), daemon=True) for a in attacks]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # every attacker holds its connection
        attacked = p50()
    finally:
        stop.set()
    for thread in threads:
        thread.join(30)
    record_property(
        "figure",
        f"FIGURE api-hostile-clients connections=10 search_p50_ms_alone={quiet * 1000:.1f} "
        f"search_p50_ms_during={attacked * 1000:.1f}",
    )
    assert attacked <= 3 * quiet + 0.05, (quiet, attacked)


# -- what the timeouts never cut --------------------------------------------------------------


def test_a_wait_and_a_stream_longer_than_the_timeouts_are_answered_in_full(bob) -> None:  # noqa: ANN001
    """Runs that take longer than both timeouts, waited for and streamed at once: the
    timeouts bound reading the request, never the response."""
    seconds = max(HEADER_TIMEOUT, BODY_TIMEOUT) + 1.0
    slow = {"assistant_id": "agent", "input": {"seconds": seconds}}

    def wait() -> tuple[float, bytes]:
        started = time.monotonic()
        waited = bob.post("/runs/wait", json=slow)
        assert waited.status_code == 200, waited.text
        return time.monotonic() - started, waited.content

    def stream() -> tuple[float, bytes]:
        started = time.monotonic()
        with bob.stream("POST", "/runs/stream", json=slow) as answer:
            assert answer.status_code == 200
            events = [line[7:] for line in answer.iter_lines() if line.startswith("event: ")]
        return time.monotonic() - started, json.dumps(events).encode()

    (waited_for, values), (streamed_for, events) = in_parallel(wait, stream)
    assert json.loads(values)["steps"] == ["work", "review", "respond"]
    assert json.loads(events)[0] == "metadata" and json.loads(events)[-1] == "end", events
    assert min(waited_for, streamed_for) > seconds
    assert bob.post("/threads/search", json={}).status_code == 200


# -- the log ----------------------------------------------------------------------------------


def wait_for_log(server: ServerProcess, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = server.log()
        if needle in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_a_spoofed_forwarded_for_is_not_the_logged_client(limited) -> None:  # noqa: ANN001
    answer = httpx.get(
        f"{limited.url}/ok?spoof=1", headers={"X-Forwarded-For": "203.0.113.77"}, timeout=10
    )
    assert answer.status_code == 200
    log = wait_for_log(limited, '"GET /ok?spoof=*** HTTP/1.1" 200')
    line = next(line for line in log.splitlines() if "/ok?spoof=***" in line)
    assert "127.0.0.1:" in line and "203.0.113.77" not in log, line


def test_a_key_in_the_query_string_never_reaches_the_log(limited, bob) -> None:  # noqa: ANN001
    secret = "rq_querysecret_" + os.urandom(8).hex()
    for method in ("GET", "POST"):
        answer = httpx.request(
            method, f"{limited.url}/threads/search?api_key={secret}&wait=1", json={}, timeout=10
        )
        assert answer.status_code == 401, answer.text  # GET: the thread "search"
    assert bob.get(f"/threads?x-api-key={secret}").status_code == 405
    log = wait_for_log(limited, "/threads?x-api-key=***")
    assert "/threads/search?api_key=***&wait=***" in log
    assert secret not in log


# -- an unexpected error ----------------------------------------------------------------------


def test_an_unexpected_error_answers_500_json_and_closes_the_connection(
    limited,
    api_backend,  # noqa: ANN001
) -> None:
    """A graph whose module fails to build (`broken`, registered on this server only): the
    thread's state cannot be read, which no handler expects."""
    key = create_key(api_backend, "mallory")
    http = httpx.Client(base_url=limited.url, headers={"x-api-key": key}, timeout=30)
    tid = http.post("/threads", json={}).json()["thread_id"]
    run = http.post(f"/threads/{tid}/runs", json={"assistant_id": "broken", "input": {}})
    assert run.status_code == 200, run.text  # no worker serves it: it stays pending
    try:
        sock = connect(limited)
        with sock:
            sock.sendall(head(f"/threads/{tid}/state", "GET", f"x-api-key: {key}\r\n\r\n"))
            answer = read_until_closed(sock)  # the server closes: no reset, nothing more
        response_head, _, body = answer.partition(b"\r\n\r\n")
        assert status_of(answer) == 500, answer[:300]
        assert b"connection: close" in response_head.lower()
        assert json.loads(body) == {"detail": "internal server error"}
        log = wait_for_log(limited, "RuntimeError: the graph's module failed to build")
        assert log.count("RuntimeError: the graph's module failed to build") == 1, log[-3000:]
        assert log.count("Exception in ASGI application") == 1, log[-3000:]
    finally:
        cancel = http.post(f"/threads/{tid}/runs/{run.json()['run_id']}/cancel")
        assert cancel.status_code == 202, cancel.text
