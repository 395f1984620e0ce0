"""Engines behind the provider `local`, through the gateway: remote vLLM servers registered by
URL, watched, routed to by load, taken out of routing when they stop, failed over from.

The engines here are fake vLLM servers (OpenAI's protocol plus vLLM's /health, model cards and
/metrics) whose health and load the test sets; the real vLLM CPU build runs in
test_engines_e2e.py. The engine manager is the one `aigw up` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.engines import EngineManager, EngineMetrics
from gateway.engines import EnginePool, Replica
from gateway.tenancy import store as tenancy
from tests.fakes.vllm import FakeVLLM
from tests.harness import Stack, request
from tests.inference.fake_models import make_model_folder


class Box:
    """A gateway with its engine manager, two fake vLLM servers serving `tiny`."""

    def __init__(self, state: Path) -> None:
        self.stack = Stack(state, inference={"watch_interval_s": 0.1}).start()
        self.engines = [FakeVLLM("tiny"), FakeVLLM("tiny")]
        for e in self.engines:
            self.stack.lt.run(e.start())
        gw = self.stack.gateway
        assert gw is not None
        self.gw = gw
        self.manager = EngineManager(self.stack.cfg, gw, 0)
        self.stack.lt.run(self.manager.start())
        self.admin = tenancy.create_admin_token(self.stack.db, "test", "engines", "admin")[1]
        self.client = openai.OpenAI(
            base_url=self.stack.url + "/v1", api_key=self.stack.key, max_retries=0
        )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        reply = request(
            self.stack,
            method,
            "/admin/v1" + path,
            orjson.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"},
        )
        return reply.status_code, reply.json() if reply.content else None

    def stop(self) -> None:
        self.stack.lt.run(self.manager.stop())
        for e in self.engines:
            self.stack.lt.run(e.stop())
        self.stack.stop()


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    b = Box(tmp_path_factory.mktemp("engines"))
    for i, e in enumerate(b.engines):
        status, row = b.call(
            "POST", "/engines/remote", {"name": f"gpu-{i}", "url": e.url + "/v1", "model": "tiny"}
        )
        assert status == 201, row
        assert row["url"] == e.url  # stored without /v1
    wait_for(lambda: len(b.gw.engines.replicas("tiny")) == 2)
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _fresh(box: Box) -> Iterator[None]:
    yield
    for e in box.engines:
        e.healthy, e.running, e.waiting, e.kv_cache_usage = True, 0, 0, 0.0
        e.requests.clear()
    wait_for(lambda: len(box.gw.engines.replicas("tiny")) == 2)
    wait_for(lambda: all(_load_of(box, e) == 0 for e in box.engines))


def test_a_remote_engine_serves_its_model_as_an_alias_of_provider_local(box: Box) -> None:
    models = {m.id: m.owned_by for m in box.client.models.list()}
    assert models["tiny"] == "local"
    raw = box.client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.parse().choices[0].message.content
    trace = raw.headers["x-request-id"]
    sent = [r for e in box.engines for r in e.requests if r.path == "/v1/chat/completions"]
    assert len(sent) == 1 and sent[0].body["model"] == "tiny"
    wait_for(lambda: bool(box.stack.usage_rows(trace)))
    row = box.stack.usage_rows(trace)[0]
    assert (row["provider"], row["upstream_model"], row["deployment"]) == (
        "local",
        "tiny",
        "local/tiny",
    )


def test_streaming_and_completions_reach_the_engine(box: Box) -> None:
    stream = box.client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    done = box.client.completions.create(model="tiny", prompt="Once upon", max_tokens=5)
    assert done.choices[0].text


def test_the_least_loaded_replica_takes_the_requests(box: Box) -> None:
    busy, idle = box.engines
    busy.waiting, busy.running, busy.kv_cache_usage = 6, 4, 0.9
    wait_for(lambda: _load_of(box, busy) == 10)
    for _ in range(6):
        box.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )
    assert _chats(idle) == 6 and _chats(busy) == 0


def test_equally_idle_replicas_share_the_work(box: Box) -> None:
    for _ in range(6):
        box.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )
    assert [_chats(e) for e in box.engines] == [3, 3]


def test_an_engine_that_stops_answering_leaves_routing_and_comes_back(box: Box) -> None:
    down, up = box.engines
    down.healthy = False
    wait_for(lambda: len(box.gw.engines.replicas("tiny")) == 1)
    for _ in range(4):
        box.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )
    assert _chats(down) == 0 and _chats(up) == 4
    status, listing = box.call("GET", "/engines")
    assert status == 200
    state = {r["name"]: r for r in listing["data"]}
    assert state["gpu-0"]["state"] == "unreachable"
    assert "HTTP 503" in state["gpu-0"]["error"]
    assert state["gpu-1"]["state"] == "ready" and state["gpu-1"]["kind"] == "remote"
    down.healthy = True
    wait_for(lambda: len(box.gw.engines.replicas("tiny")) == 2)


def test_no_ready_engine_is_a_clear_503_to_retry(box: Box) -> None:
    for e in box.engines:
        e.healthy = False
    wait_for(lambda: not box.gw.engines.replicas("tiny"))
    with pytest.raises(openai.InternalServerError) as err:
        box.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )
    assert err.value.status_code == 503
    assert err.value.response.headers["retry-after"] == "5"
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "engine_unavailable"
    assert "not ready" in body["message"] and "retry" in body["message"]


def test_a_route_fails_over_from_a_stopped_engine_to_a_provider(box: Box) -> None:
    status, route = box.call(
        "PUT",
        "/routes/team-chat",
        {
            "strategy": "priority",
            "deployments": [
                {"provider": "local", "upstream_model": "tiny"},
                {"provider": "fake-openai", "upstream_model": "gpt-4o-mini"},
            ],
        },
    )
    assert status == 200, route
    wait_for(lambda: "team-chat" in box.gw.routes)
    for e in box.engines:
        e.healthy = False
    wait_for(lambda: not box.gw.engines.replicas("tiny"))
    raw = box.client.chat.completions.with_raw_response.create(
        model="team-chat", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.parse().choices[0].message.content
    reason = raw.headers["x-aigw-route-reason"]
    assert "fake-openai/gpt-4o-mini" in reason and "engine_unavailable" in reason
    for e in box.engines:
        e.healthy = True
    wait_for(lambda: len(box.gw.engines.replicas("tiny")) == 2)
    raw = box.client.chat.completions.with_raw_response.create(
        model="team-chat", messages=[{"role": "user", "content": "Hi"}]
    )
    assert "local/tiny" in raw.headers["x-aigw-route-reason"]


def test_engines_are_on_the_metrics(box: Box) -> None:
    box.engines[0].waiting = 2
    wait_for(lambda: _load_of(box, box.engines[0]) == 2)
    text = request(box.stack, "GET", "/metrics").content.decode()
    samples = {
        (s.name, s.labels.get("engine")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("aigw_engine_ready", "gpu-0")] == 1.0
    assert samples[("aigw_engine_requests_waiting", "gpu-0")] == 2.0
    assert samples[("aigw_engine_kv_cache_usage_ratio", "gpu-1")] == 0.0
    assert isinstance(EngineMetrics(box.manager), EngineMetrics)


def test_a_remote_engine_is_validated_and_removed(box: Box) -> None:
    status, err = box.call(
        "POST", "/engines/remote", {"name": "x", "url": "ftp://gpu", "model": "tiny"}
    )
    assert status == 400 and "http://" in err["error"]["message"]
    status, err = box.call(
        "POST", "/engines/remote", {"name": "gpu-0", "url": "http://h:1", "model": "tiny"}
    )
    assert status == 409
    status, _ = box.call(
        "POST", "/engines/remote", {"name": "gone", "url": "http://127.0.0.1:9", "model": "other"}
    )
    assert status == 201
    wait_for(lambda: "other" in box.gw.routes)
    wait_for(lambda: _state(box, "gone").startswith("remote unreachable"))
    status, _ = box.call("DELETE", "/engines/remote/gone")
    assert status == 204
    wait_for(lambda: "other" not in box.gw.routes)
    status, _ = box.call("DELETE", "/engines/remote/gone")
    assert status == 404


def test_the_pool_picks_by_load_and_forgets_at_once() -> None:
    class Source:
        def __init__(self, waiting: int, kv: float) -> None:
            self.load = type("L", (), {"waiting": waiting, "running": 0, "kv_cache_usage": kv})

    pool = EnginePool()
    assert pool.pick("m") is None
    a = Replica("remote:a", "m", "http://a/v1", "remote", Source(3, 0.1))  # type: ignore[arg-type]
    b = Replica("remote:b", "m", "http://b/v1", "remote", Source(0, 0.5))  # type: ignore[arg-type]
    c = Replica("remote:c", "m", "http://c/v1", "remote", Source(0, 0.2))  # type: ignore[arg-type]
    for r in (a, b, c):
        pool.up(r)
    assert pool.pick("m") is c  # nothing queued on b or c; c's KV cache is emptier
    assert pool.down("remote:c") and not pool.down("remote:c")
    assert pool.pick("m") is b
    pool.down("remote:b")
    pool.down("remote:a")
    assert not pool.ready("m") and pool.pick("m") is None
    assert c.urls["chat"] == "http://c/v1/chat/completions"


def _chats(engine: FakeVLLM) -> int:
    return sum(1 for r in engine.requests if r.path == "/v1/chat/completions")


def _load_of(box: Box, engine: FakeVLLM) -> int | None:
    for r in box.gw.engines.replicas("tiny"):
        if r.base_url == engine.url + "/v1" and r.source is not None and r.source.load:
            return r.source.load.waiting + r.source.load.running
    return None


def _state(box: Box, name: str) -> str:
    return box.manager.states().get("other", "") if name == "gone" else ""


def test_gpus_show_local_and_remote_capacity_in_one_place(box: Box) -> None:
    box.engines[1].kv_cache_usage = 0.25
    wait_for(lambda: _kv_of(box, "gpu-1") == 0.25)
    status, report = box.call("GET", "/gpus")
    assert status == 200 and report["series"] == "G"
    engines = {e["name"]: e for e in report["engines"]}
    assert engines["gpu-1"]["kind"] == "remote" and engines["gpu-1"]["state"] == "ready"
    assert engines["gpu-1"]["kv_cache_usage"] == 0.25


def _kv_of(box: Box, name: str) -> float | None:
    row = next((r for r in box.manager.report() if r["name"] == name), None)
    return None if row is None else row["kv_cache_usage"]


def test_an_enabled_model_without_vllm_installed_says_what_to_do(box: Box, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path, "demo", context=1024)
    status, row = box.call("POST", "/local-models/import", {"path": str(folder), "license": "mit"})
    assert status == 201, row
    status, _ = box.call("POST", "/local-models/demo/enable")
    assert status == 200
    wait_for(lambda: "demo" in box.gw.routes and "demo" in box.manager.states())
    assert "vLLM's environment is not installed" in box.manager.states()["demo"]
    with pytest.raises(openai.InternalServerError) as err:
        box.client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}]
        )
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "engine_unavailable"
    assert "inference.engine_env build" in body["message"]
    status, _ = box.call("POST", "/local-models/demo/disable")
    assert status == 200
    wait_for(lambda: "demo" not in box.gw.routes)


def test_a_remote_engine_with_a_key_gets_it_and_the_others_do_not(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed = FakeVLLM("keyed", key="sk-remote-engine")
    box.stack.lt.run(keyed.start())
    monkeypatch.setenv("AIGW_TEST_REMOTE_KEY", "sk-remote-engine")
    try:
        status, _ = box.call(
            "POST",
            "/engines/remote",
            {
                "name": "k",
                "url": keyed.url,
                "model": "keyed",
                "api_key_env": "AIGW_TEST_REMOTE_KEY",
            },
        )
        assert status == 201
        wait_for(lambda: box.gw.engines.ready("keyed"))
        for model in ("keyed", "tiny", "keyed"):
            box.client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}]
            )
        sent = [r for r in keyed.requests if r.path == "/v1/chat/completions"]
        assert [r.headers["authorization"] for r in sent] == ["Bearer sk-remote-engine"] * 2
        plain = [r for e in box.engines for r in e.requests if r.path == "/v1/chat/completions"]
        assert len(plain) == 1 and "authorization" not in plain[0].headers
    finally:
        box.call("DELETE", "/engines/remote/k")
        box.stack.lt.run(keyed.stop())
