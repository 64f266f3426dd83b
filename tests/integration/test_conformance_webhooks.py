"""Differential conformance of the `webhook` field of a run: the same requests against
`langgraph dev` and against runqueue (the harness and its `servers` fixture are
tests/integration/test_api_conformance.py's). A webhook that would reach inside is refused
with 422 and a `detail` by both; KNOWN_DIFFERENCES lists where runqueue refuses more."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient

from tests.integration.test_api_conformance import (
    GRAPH,
    Known,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module fixture: the reference and runqueue, side by side
    transcripts,
)

pytestmark = pytest.mark.integration

KNOWN_DIFFERENCES: dict[str, Known] = {
    "webhook.private": Known(
        (200, False),
        (422, True),
        "runqueue refuses private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) "
        "by default, as the issue asks; the reference allows them unless its "
        "webhooks.url.disable_private_ips is set. RUNQUEUE_WEBHOOK_ALLOWED_HOSTS opens them.",
    ),
}

CASES = {
    "loopback": "http://127.0.0.1/hook",
    "loopback_v6": "http://[::1]/hook",
    "localhost": "http://localhost:8123/hook",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "link_local": "http://169.254.10.10/hook",
    "relative": "/threads",
    "scheme": "ftp://example.com/hook",
    "private": "http://10.0.0.1/hook",
}


async def webhooks(client: LangGraphClient, t: Transcript) -> None:
    raw = client.http.client
    thread_id = (await client.threads.create())["thread_id"]
    for name, url in CASES.items():
        body: dict[str, Any] = {"assistant_id": GRAPH, "input": {"steps": []}, "webhook": url}
        response = await raw.post(f"/threads/{thread_id}/runs", json=body)
        if response.status_code == 200:  # let it end before the next one (reject strategy)
            await raw.post(f"/threads/{thread_id}/runs/{response.json()['run_id']}/join")
        t.note(f"webhook.{name}", error_shape(response))
    # The same check on a stateless run (POST /runs/wait)
    stateless = await raw.post(
        "/runs/wait", json={"assistant_id": GRAPH, "input": {}, "webhook": CASES["loopback"]}
    )
    t.note("webhook.stateless_loopback", error_shape(stateless))


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    t = Transcript()
    await webhooks(client, t)
    return t.items


def test_webhook_refusals_answer_as_the_reference_server_does(servers) -> None:  # noqa: ANN001, F811
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)
