"""Who may do what over HTTP, and what bad input gets: every cross-user access answers 404
like an unknown id, every request without a valid key 401, every bad request a 4xx with a
JSON `detail`, and none of them changes a row."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.api_support import table_counts
from tests.support import as_process, pid_alive, settings_env

pytestmark = pytest.mark.integration

AGENT = "agent"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def alice_run(server, keys) -> tuple[str, str]:  # noqa: ANN001
    """A thread of alice's with one finished run."""
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=60)
    tid = http.post("/threads", json={"metadata": {"owner": "alice"}}).json()["thread_id"]
    run = http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": AGENT, "input": {}})
    assert run.status_code == 200, run.text
    rid = http.get(f"/threads/{tid}/runs").json()[0]["run_id"]
    return tid, rid


def requests_on(tid: str, rid: str) -> list[tuple[str, str, dict | None]]:
    """Every endpoint that reads or changes that thread or run."""
    run = {"assistant_id": AGENT, "input": {}, "if_not_exists": "reject"}
    return [
        ("GET", f"/threads/{tid}", None),
        ("GET", f"/threads/{tid}/state", None),
        ("GET", f"/threads/{tid}/history", None),
        ("POST", f"/threads/{tid}/history", {"limit": 1}),
        ("GET", f"/threads/{tid}/state/1f000000-0000-6000-8000-000000000000", None),
        ("POST", f"/threads/{tid}/state/checkpoint", {"checkpoint": {"checkpoint_ns": ""}}),
        ("POST", f"/threads/{tid}/state", {"values": {"steps": ["bob"]}}),
        ("DELETE", f"/threads/{tid}", None),
        ("GET", f"/threads/{tid}/runs", None),
        ("POST", f"/threads/{tid}/runs", run),
        ("POST", f"/threads/{tid}/runs/stream", run),
        ("POST", f"/threads/{tid}/runs/wait", run),
        ("GET", f"/threads/{tid}/runs/{rid}", None),
        ("GET", f"/threads/{tid}/runs/{rid}/join", None),
        ("GET", f"/threads/{tid}/runs/{rid}/stream", None),
        ("POST", f"/threads/{tid}/runs/{rid}/cancel", None),
        ("DELETE", f"/threads/{tid}/runs/{rid}", None),
    ]


def test_another_users_thread_and_run_answer_404_like_unknown_ones(
    server,
    keys,
    alice_run,
    api_backend,  # noqa: ANN001
) -> None:
    tid, rid = alice_run
    bob = httpx.Client(base_url=server.url, headers={"x-api-key": keys["bob"]}, timeout=30)
    before = table_counts(api_backend)
    unknown = requests_on(str(uuid.uuid4()), str(uuid.uuid4()))
    for (method, path, body), (_, unknown_path, _) in zip(
        requests_on(tid, rid), unknown, strict=True
    ):
        answer = bob.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert isinstance(answer.json()["detail"], str)
        same = bob.request(method, unknown_path, json=body)
        assert same.status_code == 404, (method, unknown_path, same.text)
    assert bob.post("/threads/search", json={}).json() == []
    assert table_counts(api_backend) == before
    alice = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=30)
    assert alice.get(f"/threads/{tid}/runs/{rid}").json()["status"] == "success"
    assert [t["thread_id"] for t in alice.post("/threads/search", json={}).json()] == [tid]


def test_every_request_without_a_valid_key_answers_401(
    server,
    keys,
    alice_run,
    api_backend,  # noqa: ANN001
) -> None:
    tid, rid = alice_run
    endpoints = [
        *requests_on(tid, rid),
        ("POST", "/threads", {}),
        ("POST", "/threads/search", {}),
        ("POST", "/runs", {"assistant_id": AGENT}),
        ("POST", "/runs/wait", {"assistant_id": AGENT}),
        ("POST", "/runs/stream", {"assistant_id": AGENT}),
        ("POST", "/assistants/search", {}),
        ("GET", f"/assistants/{AGENT}", None),
    ]
    before = table_counts(api_backend)
    wrong = keys["alice"][:-4] + "AAAA"
    for headers in ({}, {"x-api-key": ""}, {"x-api-key": wrong}, {"x-api-key": "bogus"}):
        http = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        for method, path, body in endpoints:
            answer = http.request(method, path, json=body)
            assert answer.status_code == 401, (headers, method, path, answer.text)
            assert "detail" in answer.json()
    assert table_counts(api_backend) == before


def test_a_revoked_key_answers_401_at_once(server, api_backend) -> None:  # noqa: ANN001
    from tests.integration.conftest import create_key

    key = create_key(api_backend, "carol")
    http = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30)
    assert http.post("/threads/search", json={}).status_code == 200
    key_id = key.split("_")[1]
    subprocess.run(
        as_process(["runqueue", "api-key", "revoke", key_id]),
        env=settings_env(api_backend.settings),
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert http.post("/threads/search", json={}).status_code == 401


def bad_requests(tid: str, rid: str) -> list[tuple[str, str, str, object, dict]]:
    """(why, method, path, JSON body, headers): each must answer a 4xx with a detail."""
    runs = f"/threads/{tid}/runs"
    return [
        ("unknown field", "POST", runs, {"assistant_id": AGENT, "bogus": 1}, {}),
        ("unknown thread field", "POST", "/threads", {"thread_id": None, "x": 1}, {}),
        ("wrong type", "POST", runs, {"assistant_id": AGENT, "metadata": "text"}, {}),
        ("wrong type", "POST", runs, {"assistant_id": 42}, {}),
        ("missing assistant", "POST", runs, {"input": {}}, {}),
        ("unknown assistant", "POST", runs, {"assistant_id": "nope"}, {}),
        ("unknown strategy", "POST", runs, {"assistant_id": AGENT, "multitask_strategy": "x"}, {}),
        ("unknown stream mode", "POST", runs, {"assistant_id": AGENT, "stream_mode": "x"}, {}),
        ("unserved stream mode", "POST", runs, {"assistant_id": AGENT, "stream_mode": "tools"}, {}),
        ("unknown on_disconnect", "POST", runs, {"assistant_id": AGENT, "on_disconnect": "x"}, {}),
        ("unresolvable webhook", "POST", runs, {"assistant_id": AGENT, "webhook": "http://x"}, {}),
        ("bad command", "POST", runs, {"assistant_id": AGENT, "command": {"resume": None}}, {}),
        (
            "input and command",
            "POST",
            runs,
            {"assistant_id": AGENT, "input": {}, "command": {"resume": 1}},
            {},
        ),
        ("plain task with config", "POST", runs, {"assistant_id": "echo", "config": {"a": 1}}, {}),
        ("plain task with a list", "POST", runs, {"assistant_id": "echo", "input": [1]}, {}),
        ("unknown thread", "POST", f"/threads/{uuid.uuid4()}/runs", {"assistant_id": AGENT}, {}),
        (
            "oversize body",
            "POST",
            runs,
            {"assistant_id": AGENT, "input": {"x": "a" * 3_000_000}},
            {},
        ),
        ("malformed thread id", "GET", "/threads/not a thread!", None, {}),
        ("malformed run id", "GET", f"/threads/{tid}/runs/not-a-uuid", None, {}),
        ("malformed run id", "POST", f"/threads/{tid}/runs/not-a-uuid/cancel", None, {}),
        ("unknown action", "POST", f"/threads/{tid}/runs/{rid}/cancel?action=explode", None, {}),
        ("unknown run status", "GET", f"{runs}?status=weird", None, {}),
        ("negative limit", "GET", f"{runs}?limit=-1", None, {}),
        ("bad Last-Event-ID", "GET", f"{runs}/{rid}/stream", None, {"Last-Event-ID": "x"}),
        ("thread exists", "POST", "/threads", {"thread_id": tid}, {}),
        ("bad if_exists", "POST", "/threads", {"if_exists": "maybe"}, {}),
        ("bad search status", "POST", "/threads/search", {"status": "sleepy"}, {}),
        ("bad search limit", "POST", "/threads/search", {"limit": 0}, {}),
        ("search by values", "POST", "/threads/search", {"values": {"a": 1}}, {}),
        ("not JSON", "POST", "/threads", "{not json", {"content-type": "application/json"}),
        ("JSON not an object", "POST", runs, [1, 2], {}),
        (
            "NaN",
            "POST",
            runs,
            '{"assistant_id": "agent", "input": NaN}',
            {"content-type": "application/json"},
        ),
        (
            "kwarg runqueue passes",
            "POST",
            runs,
            {"assistant_id": "echo", "input": {"thread_id": "x"}},
            {},
        ),
        ("kwarg runqueue passes", "POST", runs, {"assistant_id": "echo", "input": {"self": 1}}, {}),
        ("huge offset", "POST", "/threads/search", {"offset": 10**20}, {}),
        ("huge offset", "GET", f"{runs}?offset=100000000000000000000", None, {}),
        ("lone surrogate", "POST", "/threads", '{"metadata": {"a": "\\ud800"}}', JSON),
        (
            "lone surrogate",
            "POST",
            runs,
            '{"assistant_id": "echo", "input": {"a": "\\udfff"}}',
            JSON,
        ),
        ("lone surrogate", "POST", runs, '{"assistant_id": "\\ud800"}', JSON),
        ("lone surrogate", "POST", "/threads", '{"thread_id": "\\ud800"}', JSON),
        ("huge Last-Event-ID", "GET", f"{runs}/{rid}/stream", None, {"Last-Event-ID": "9" * 25}),
        ("'/' in a thread id", "POST", "/threads", {"thread_id": "a/b"}, {}),
        (
            "on_completion delete",
            "POST",
            runs,
            {"assistant_id": AGENT, "on_completion": "delete"},
            {},
        ),
        ("unknown durability", "POST", runs, {"assistant_id": AGENT, "durability": "never"}, {}),
        ("strict_resume", "POST", runs, {"assistant_id": AGENT, "strict_resume": True}, {}),
        *hostile_requests(tid),
    ]


def nested(depth: int) -> dict:
    value: dict | int = 1
    for _ in range(depth):
        value = {"a": value}
    assert isinstance(value, dict)
    return value


def hostile_requests(tid: str) -> list[tuple[str, str, str, object, dict]]:
    """Issue 23's rows over HTTP: each was a 500 (or a run a worker could not carry, or a
    file written) before; each must be a 4xx with a detail, with nothing written."""
    runs = f"/threads/{tid}/runs"
    echo = {"assistant_id": "echo"}
    return [
        # 1: nesting that breaks pickling (the worker's hand-off), serializers, json.
        ("input 600 deep", "POST", runs, {**echo, "input": {"x": nested(600)}}, {}),
        ("input 600 deep, new thread", "POST", "/threads/t-deep/runs",
         {**echo, "if_not_exists": "create", "input": {"x": nested(600)}}, {}),
        ("graph input 600 deep", "POST", runs, {"assistant_id": AGENT, "input": nested(600)}, {}),
        ("stateless wait 600 deep", "POST", "/runs/wait", {**echo, "input": nested(600)}, {}),
        ("stream 600 deep", "POST", f"{runs}/stream", {**echo, "input": nested(600)}, {}),
        ("config 300 deep", "POST", runs,
         {"assistant_id": AGENT, "config": {"configurable": nested(300)}}, {}),
        ("command 300 deep", "POST", runs,
         {"assistant_id": AGENT, "command": {"resume": nested(300)}}, {}),
        ("run metadata 900 deep", "POST", runs, {**echo, "metadata": nested(900)}, {}),
        # 2: a default install's test-only option that writes a file.
        ("journal option", "POST", "/runs/wait",
         {**echo, "input": {"journal": "written-by-bob.txt"}}, {}),
        # 3: deep JSON stored, then every read of it a 500.
        ("thread metadata 900 deep", "POST", "/threads", {"metadata": nested(900)}, {}),
        ("search metadata 900 deep", "POST", "/threads/search", {"metadata": nested(900)}, {}),
        ("assistant search 900 deep", "POST", "/assistants/search", {"metadata": nested(900)}, {}),
        # 4: a final newline in a thread id.
        ("thread id newline", "POST", "/threads", {"thread_id": "t\n"}, {}),
        ("thread id 128 + newline", "POST", "/threads", {"thread_id": "t" * 128 + "\n"}, {}),
        ("run on t%0A", "POST", "/threads/t%0A/runs", {**echo, "if_not_exists": "create"}, {}),
        ("read t%0A", "GET", "/threads/t%0A", None, {}),
    ]  # fmt: skip


def test_bad_input_gets_a_4xx_with_a_json_detail_and_changes_nothing(
    server,
    keys,
    alice_run,
    api_backend,
    api_worker,  # noqa: ANN001
) -> None:
    tid, rid = alice_run
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=30)
    before = table_counts(api_backend)
    for why, method, path, body, headers in bad_requests(tid, rid):
        if isinstance(body, str):
            answer = http.request(method, path, content=body, headers=headers)
        else:
            answer = http.request(method, path, json=body, headers=headers)
        assert 400 <= answer.status_code < 500, (why, answer.status_code, answer.text)
        assert "detail" in answer.json(), (why, answer.text)
    assert table_counts(api_backend) == before
    assert not (Path(api_worker.cwd) / "written-by-bob.txt").exists()
    assert http.post("/threads/search", json={}).status_code == 200  # reads still work
    assert pid_alive(api_worker.pid)  # no worker took a poison run


def test_kwargs_that_do_not_fit_the_assistant_answer_422_naming_the_field(
    server,
    keys,
    alice_run,
    api_backend,  # noqa: ANN001
) -> None:
    """Issue 25 item 5: `input` a plain assistant's function cannot take, or a graph's input
    schema does not have, is refused at create (it was a 200, then the run's `__error__`):
    422, the detail names the field, no run and no thread (not the one if_not_exists or a
    stateless run would make). Fitting input still runs, a graph's partial state included."""
    tid, _ = alice_run
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=60)
    new = f"/threads/{uuid.uuid4()}/runs"
    misfits = [
        (f"/threads/{tid}/runs", {"assistant_id": "fail", "input": {"mesage": "one"}}, "'mesage'"),
        (new, {"assistant_id": "fail", "input": {"mesage": "one"}, "if_not_exists": "create"},
         "'mesage'"),
        ("/runs/wait", {"assistant_id": "steps", "input": {"stepz": 1}}, "'stepz'"),
        (f"/threads/{tid}/runs/stream", {"assistant_id": AGENT, "input": "hello"}, "input of"),
        (f"/threads/{tid}/runs", {"assistant_id": AGENT, "input": {"secs": 1}}, "input.secs"),
        ("/runs", {"assistant_id": AGENT, "input": [1]}, "not list"),
    ]  # fmt: skip
    before = table_counts(api_backend)
    for path, body, field in misfits:
        answer = http.post(path, json=body)
        assert answer.status_code == 422, (path, body, answer.text)
        assert field in answer.json()["detail"], (path, answer.text)
    assert table_counts(api_backend) == before
    assert http.get(new.removesuffix("/runs")).status_code == 404
    echo = http.post("/runs/wait", json={"assistant_id": "echo", "input": {"any": "key"}})
    assert echo.status_code == 200 and echo.json()["echo"] == {"any": "key"}, echo.text
    partial = http.post("/runs/wait", json={"assistant_id": AGENT, "input": {"seconds": 0}})
    assert partial.status_code == 200, partial.text
    assert partial.json()["steps"] == ["work", "review", "respond"], partial.text


def test_a_database_outage_answers_503_with_retry_after(api_backend, tmp_path) -> None:  # noqa: ANN001
    """The database port closed: a real outage, answered 503, never 500."""
    from tests.api_support import api_server, free_port

    down = api_backend.settings.with_overrides(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone",
        api_auth="off",
    )
    server = api_server(down, tmp_path / "api.log").start()
    try:
        for method, path, body in (
            ("POST", "/threads", {}),
            ("POST", "/threads/search", {}),
            ("GET", f"/threads/{uuid.uuid4()}", None),
        ):
            answer = httpx.request(method, server.url + path, json=body, timeout=30)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["Retry-After"] == "5" and "detail" in answer.json()
    finally:
        server.stop()


def test_a_chunked_body_over_the_limit_answers_413(server, keys, alice_run, api_backend) -> None:  # noqa: ANN001
    tid, _ = alice_run
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=30)
    before = table_counts(api_backend)

    def chunks():  # noqa: ANN202 - no Content-Length: sent chunked
        yield b'{"assistant_id": "agent", "input": {"x": "'
        for _ in range(400):
            yield b"a" * 10_000
        yield b'"}}'

    answer = http.post(f"/threads/{tid}/runs", content=chunks(), headers=JSON)
    assert answer.status_code == 413 and "detail" in answer.json()
    small = http.post(
        f"/threads/{tid}/runs", content=iter([b'{"assistant_id": "agent"', b"}"]), headers=JSON
    )
    assert small.status_code == 200, small.text  # a chunked body within the limit goes through
    http.get(f"/threads/{tid}/runs/{small.json()['run_id']}/join")
    assert table_counts(api_backend)["runs"] == before["runs"] + 1


def test_two_api_keys_answer_400_and_change_nothing(server, keys, alice_run, api_backend) -> None:  # noqa: ANN001
    """Which of two keys would count is a guess: neither does."""
    tid, rid = alice_run
    before = table_counts(api_backend)
    endpoints = [
        ("POST", "/threads", {}),
        ("POST", "/threads/search", {}),
        ("POST", f"/threads/{tid}/runs", {"assistant_id": AGENT, "input": {}}),
        ("POST", f"/threads/{tid}/runs/{rid}/cancel", None),
        ("DELETE", f"/threads/{tid}", None),
    ]
    for first, second in ((keys["bob"], keys["alice"]), (keys["alice"], keys["alice"])):
        headers = [("x-api-key", first), ("X-API-Key", second)]
        for method, path, body in endpoints:
            answer = httpx.request(method, server.url + path, headers=headers, json=body)
            assert answer.status_code == 400, (method, path, answer.text)
            assert "x-api-key" in answer.json()["detail"]
    assert table_counts(api_backend) == before


@pytest.fixture(scope="module")
def open_server(api_backend, api_worker, tmp_path_factory):  # noqa: ANN001, ANN201
    """`runqueue serve` with RUNQUEUE_API_AUTH=off, on 127.0.0.1."""
    from tests.api_support import api_server

    log = tmp_path_factory.mktemp("api-open") / "api.log"
    process = api_server(api_backend.settings.with_overrides(api_auth="off"), log).start()
    yield process
    process.stop()


def test_with_keys_off_a_foreign_host_or_another_sites_page_is_refused(open_server) -> None:  # noqa: ANN001
    """DNS rebinding (a page whose own name now points at 127.0.0.1) answers 421; a simple
    cross-site POST (text/plain, no body, no preflight) answers 403 and cancels nothing."""
    http = httpx.Client(base_url=open_server.url, timeout=60)
    tid = http.post("/threads", json={}).json()["thread_id"]
    body = {"assistant_id": AGENT, "input": {"seconds": 2}}
    rid = http.post(f"/threads/{tid}/runs", json=body).json()["run_id"]
    run, cancel = f"/threads/{tid}/runs/{rid}", f"/threads/{tid}/runs/{rid}/cancel"
    for host in ("evil.example", "evil.example:8123", "127.0.0.1.evil.example", ""):
        rebound = {"Host": host, "Origin": f"http://{host}"}
        for method, path, json_body in (
            ("POST", "/threads/search", {}),
            ("GET", f"/threads/{tid}", None),
            ("POST", cancel, None),
        ):
            answer = http.request(method, path, headers=rebound, json=json_body)
            assert answer.status_code == 421, (host, path, answer.text)
            assert "loopback" in answer.json()["detail"]
    for page in (
        {"Origin": "http://evil.example"},
        {"Origin": "https://127.0.0.1.evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        answer = http.post(cancel, headers={"Content-Type": "text/plain", **page})
        assert answer.status_code == 403, (page, answer.text)
        assert isinstance(answer.json()["detail"], str)
    assert http.get(run).json()["status"] in ("pending", "running")
    # The graph's own writes: every node ran, so nothing stopped it.
    assert http.get(f"{run}/join").json()["steps"] == ["work", "review", "respond"]
    assert http.get(run).json()["status"] == "success"
    for loopback in (
        {"Host": "localhost:8123"},
        {"Host": "LOCALHOST"},
        {"Host": "127.0.0.2"},
        {"Host": "[::1]:8123"},
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
        {"Origin": open_server.url, "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://[::1]:8123"},
    ):
        answer = http.post("/threads/search", json={}, headers=loopback)
        assert answer.status_code == 200, (loopback, answer.text)
        assert tid in [thread["thread_id"] for thread in answer.json()]
    assert http.get("/ok", headers={"Host": "evil.example"}).status_code == 200
