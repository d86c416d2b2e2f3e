"""The mock server, driven by the official OpenAI Python SDK with strict
response validation: if the SDK accepts our objects, so will clients built
on the real API's shapes.

Runs `${MLPREDICT_BIN:-target/debug/mlpredict} mock-server --port 0 ...`, or
the command in MLPREDICT_MOCK_CMD (e.g.
`target/debug/examples/serve`, built by `cargo build -p mock-server --examples`).
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

import openai
import pytest
from openai import OpenAI

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


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
    kw.setdefault("api_key", "sk-test")
    return OpenAI(base_url=base + "/v1", _strict_response_validation=True, **kw)


def stats(base):
    with urllib.request.urlopen(base + "/mock/stats") as r:
        return json.load(r)


def chat_jsonl(n, prefix="r-"):
    lines = []
    for i in range(n):
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"review {i}: great"}]}
        lines.append(json.dumps({"custom_id": f"{prefix}{i}", "method": "POST", "url": CHAT, "body": body}))
    return ("\n".join(lines) + "\n").encode()


def wait(c, batch_id, statuses, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        b = c.batches.retrieve(batch_id)
        if b.status in statuses:
            return b
        assert time.monotonic() < deadline, f"batch stuck in {b.status}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def base():
    with mock_server("--validating", "50ms", "--in-progress", "100ms", "--finalizing", "50ms") as url:
        yield url


def test_upload_create_poll_download(base):
    c = client(base)
    f = c.files.create(file=("input.jsonl", chat_jsonl(20)), purpose="batch")
    assert f.id.startswith("file-") and f.purpose == "batch" and f.status == "processed"
    assert c.files.retrieve(f.id).bytes == f.bytes
    assert f.id in [x.id for x in c.files.list(purpose="batch")]
    b = c.batches.create(
        input_file_id=f.id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"batch_number": "sdk-0-0-19", "attempt": "0"},
    )
    assert b.status == "validating" and b.metadata["batch_number"] == "sdk-0-0-19"
    done = wait(c, b.id, {"completed", "failed"})
    assert done.status == "completed", done
    assert done.request_counts.total == 20 and done.request_counts.completed == 20
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens > 0
    assert done.error_file_id is None
    lines = [json.loads(x) for x in c.files.content(done.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"r-{i}" for i in range(20))
    for line in lines:
        body = openai.types.chat.ChatCompletion.model_validate(line["response"]["body"])
        assert body.choices[0].message.content.startswith("rating: ")
    deleted = c.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id


def test_list_pagination(base):
    c = client(base)
    f = c.files.create(file=("p.jsonl", chat_jsonl(1)), purpose="batch")
    created = [c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id for _ in range(5)]
    newest_first = created[::-1]
    page = c.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert page.has_more and page.has_next_page()
    page2 = c.batches.list(limit=2, after=page.data[-1].id)
    assert [b.id for b in page2.data] == newest_first[2:4]
    # the SDK's auto-pagination follows `after=last_id` to the end
    every = [b.id for b in c.batches.list(limit=2)]
    assert every[:5] == newest_first and len(every) == len(set(every))


def test_not_found(base):
    c = client(base)
    with pytest.raises(openai.NotFoundError):
        c.batches.retrieve("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve("file-doesnotexist")
    with pytest.raises(openai.NotFoundError) as e:
        c.batches.cancel("batch_doesnotexist")
    assert e.value.status_code == 404 and "batch_doesnotexist" in str(e.value)


def test_sync_chat_and_embeddings(base):
    c = client(base)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "terrible and broken"}])
    assert r.choices[0].message.content.startswith("rating: 1/5")
    floats = c.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    assert len(floats.data[0].embedding) == 8
    # By default the SDK asks for base64 and decodes it after parsing; strict
    # validation rejects the base64 string before that (with the real API too),
    # so this path is checked with a non-strict client.
    lenient = OpenAI(base_url=base + "/v1", api_key="sk-test")
    b64 = lenient.embeddings.create(model="text-embedding-3-small", input="hello").data[0].embedding
    assert b64 == pytest.approx(floats.data[0].embedding)


def test_cancel():
    with mock_server("--in-progress", "5s", "--cancelling", "200ms") as url:
        c = client(url)
        f = c.files.create(file=("c.jsonl", chat_jsonl(50)), purpose="batch")
        b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
        wait(c, b.id, {"in_progress"})
        cancelling = c.batches.cancel(b.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        done = wait(c, b.id, {"cancelled"})
        assert done.cancelled_at is not None
        assert done.request_counts.completed < 50


def test_rate_limit_is_retried_honouring_retry_after():
    with mock_server("--rate-limit-fraction", "0.4", "--seed", "3", "--retry-after", "100ms") as url:
        c = client(url, max_retries=10)
        t = time.monotonic()
        for _ in range(10):
            assert c.batches.list().object == "list"
        elapsed = time.monotonic() - t
        limited = stats(url)["faults_injected"].get("rate_limit", 0)
        assert limited >= 2, "the fault should have fired"
        assert stats(url)["calls_by_route"]["GET /v1/batches"] == 10 + limited
        # retry-after-ms (0.1 s) was honoured: the SDK's own backoff starts at 0.375-0.5 s
        assert 0.1 * limited <= elapsed < 0.3 * limited + 1.0, (elapsed, limited)


def test_authentication_error():
    with mock_server("--api-key", "sk-good") as url:
        with pytest.raises(openai.AuthenticationError) as e:
            client(url, api_key="sk-bad-key-000").batches.list()
        assert e.value.code == "invalid_api_key"
        assert client(url, api_key="sk-good").batches.list().data == []
