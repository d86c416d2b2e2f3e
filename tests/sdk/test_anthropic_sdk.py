"""The mock server's Anthropic Message Batches, driven by the official
Anthropic Python SDK with strict response validation: if the SDK accepts our
MessageBatch objects, result lines and errors, so will clients built on the
real API's shapes.

Runs `${MLPREDICT_BIN:-target/debug/mlpredict} mock-server --port 0 ...`, or
the command in MLPREDICT_MOCK_CMD (see test_openai_sdk.py).
"""

import json
import os
import re
import select
import shlex
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import anthropic
import pytest
from anthropic import Anthropic

ROOT = Path(__file__).resolve().parents[2]
MODEL = "claude-haiku-4-5"


def mock_cmd():
    override = os.environ.get("MLPREDICT_MOCK_CMD")
    if override:
        return shlex.split(override)
    binary = os.environ.get("MLPREDICT_BIN", str(ROOT / "target" / "debug" / "mlpredict"))
    return [binary, "mock-server"]


@contextmanager
def mock_server(*args):
    """Starts the mock, yields its base url (`http://127.0.0.1:PORT`)."""
    cmd = mock_cmd() + ["--port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        line = proc.stdout.readline() if ready else ""
        m = re.fullmatch(r"mock server listening on (http://127\.0\.0\.1:\d+)/v1\n", line)
        assert m, f"unexpected first line from {cmd}: {line!r}"
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(base, **kw):
    kw.setdefault("api_key", "sk-ant-test")
    # The SDK appends /v1/... itself.
    return Anthropic(base_url=base, _strict_response_validation=True, **kw)


def stats(base):
    with urllib.request.urlopen(base + "/mock/stats") as r:
        return json.load(r)


def requests(n, tag="mpsdk"):
    return [
        {
            "custom_id": f"{tag}_0-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 64,
                "system": "Rate the review.",
                "messages": [{"role": "user", "content": f"review {i}: great phone"}],
            },
        }
        for i in range(n)
    ]


def wait_ended(c, batch_id, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        b = c.messages.batches.retrieve(batch_id)
        if b.processing_status == "ended":
            return b
        assert time.monotonic() < deadline, f"batch stuck in {b.processing_status}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def base():
    with mock_server("--validating", "20ms", "--in-progress", "100ms", "--finalizing", "20ms") as url:
        yield url


def test_create_poll_results(base):
    c = client(base)
    reqs = requests(20)
    reqs.append({"custom_id": "mpsdk_0-bad", "params": {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}})
    b = c.messages.batches.create(requests=reqs)
    assert isinstance(b, anthropic.types.messages.MessageBatch)
    assert b.id.startswith("msgbatch_") and b.type == "message_batch"
    assert b.processing_status == "in_progress" and b.results_url is None
    assert b.request_counts.processing == 21 and b.request_counts.succeeded == 0
    assert b.created_at.tzinfo is not None and b.expires_at > b.created_at
    done = wait_ended(c, b.id)
    assert done.ended_at is not None and done.results_url.endswith(f"/v1/messages/batches/{b.id}/results")
    counts = done.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (0, 20, 1, 0, 0)
    results = list(c.messages.batches.results(b.id))
    assert len(results) == 21
    by_id = {r.custom_id: r for r in results}
    assert sorted(by_id) == sorted(r["custom_id"] for r in reqs)
    for i in range(20):
        r = by_id[f"mpsdk_0-{i}"].result
        assert r.type == "succeeded"
        assert r.message.role == "assistant" and r.message.model == MODEL
        assert r.message.content[0].type == "text"
        assert r.message.content[0].text.startswith("rating: ")
        assert r.message.usage.input_tokens > 0 and r.message.stop_reason == "end_turn"
    bad = by_id["mpsdk_0-bad"].result
    assert bad.type == "errored"
    assert bad.error.type == "error" and bad.error.error.type == "invalid_request_error"
    assert "max_tokens" in bad.error.error.message
    assert stats(base)["creates_by_batch_number"]["anthropic:mpsdk"] == 1


def test_list_pagination_and_delete(base):
    c = client(base)
    created = [c.messages.batches.create(requests=requests(1, tag=f"mpl{i}")).id for i in range(5)]
    newest_first = created[::-1]
    page = c.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert page.has_more and page.has_next_page()
    page2 = c.messages.batches.list(limit=2, after_id=page.last_id)
    assert [b.id for b in page2.data] == newest_first[2:4]
    back = c.messages.batches.list(limit=2, before_id=newest_first[2])
    assert [b.id for b in back.data] == newest_first[:2]
    # auto-pagination follows after_id=last_id to the end
    every = [b.id for b in c.messages.batches.list(limit=2)]
    assert every[:5] == newest_first and len(every) == len(set(every))
    # delete: refused while processing, then allowed
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.delete(created[0])
    wait_ended(c, created[0])
    deleted = c.messages.batches.delete(created[0])
    assert deleted.id == created[0] and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        c.messages.batches.retrieve(created[0])


def test_errors(base):
    c = client(base)
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.batches.retrieve("msgbatch_doesnotexist")
    assert e.value.status_code == 404
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.batches.create(requests=requests(2) + requests(1))
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.create(requests=[{"custom_id": "not valid!", "params": {"model": MODEL}}])


def test_cancel():
    with mock_server("--in-progress", "5s", "--cancelling", "100ms") as url:
        c = client(url)
        b = c.messages.batches.create(requests=requests(30))
        time.sleep(0.05)
        canceling = c.messages.batches.cancel(b.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        done = wait_ended(c, b.id)
        assert done.request_counts.canceled + done.request_counts.succeeded == 30
        assert done.request_counts.canceled > 0
        kinds = {r.result.type for r in c.messages.batches.results(b.id)}
        assert "canceled" in kinds and kinds <= {"canceled", "succeeded"}


def test_expired_and_failed_requests():
    with mock_server(
        "--instant", "--expire-fraction", "1", "--request-5xx-fraction", "0.3", "--seed", "4"
    ) as url:
        c = client(url)
        b = c.messages.batches.create(requests=requests(40))
        done = wait_ended(c, b.id)
        assert done.request_counts.expired == 20
        results = list(c.messages.batches.results(b.id))
        kinds = [r.result.type for r in results]
        assert kinds.count("expired") == 20
        errored = [r.result for r in results if r.result.type == "errored"]
        assert errored and all(e.error.error.type == "api_error" for e in errored)


def test_rate_limits_and_overload_are_retried():
    with mock_server(
        "--rate-limit-fraction", "0.3", "--server-error-fraction", "0.2", "--seed", "3", "--retry-after", "50ms"
    ) as url:
        c = client(url, max_retries=10)
        for _ in range(10):
            assert c.messages.batches.list().data is not None
        injected = stats(url)["faults_injected"]
        assert injected.get("rate_limit", 0) >= 1 and injected.get("server_error", 0) >= 1


def test_authentication_error():
    with mock_server("--api-key", "sk-ant-good") as url:
        with pytest.raises(anthropic.AuthenticationError) as e:
            client(url, api_key="sk-ant-bad-000").messages.batches.list()
        assert e.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
        assert client(url, api_key="sk-ant-good").messages.batches.list().data == []


def test_sync_messages(base):
    c = client(base)
    m = c.messages.create(model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "terrible and broken"}])
    assert m.type == "message" and m.content[0].text.startswith("rating: 1/5")
    with pytest.raises(anthropic.BadRequestError):
        c.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])
