"""Fake OpenAI API: chat completions, legacy completions, embeddings, models."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from aiohttp import web

from .base import (
    BODY,
    FakeUpstream,
    Prompt,
    Reply,
    embedding,
    float32_le,
    json_response,
    make_reply,
    rand_id,
    sse,
)

_DONE = b"data: [DONE]\n\n"
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_call": "tool_calls"}
_ERROR_TYPES = {429: ("requests", "rate_limit_exceeded")}
_FINGERPRINT = "fp_fake0001"


def content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string or a list of parts (text parts concatenated)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _stop_list(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []


def _int(body: dict[str, Any], *keys: str) -> int | None:
    return next((v for k in keys if isinstance(v := body.get(k), int)), None)


def chat_prompt(body: dict[str, Any]) -> Prompt:
    messages: list[dict[str, Any]] = body["messages"]
    texts = [content_text(m.get("content")) for m in messages]
    last_user = next(
        (
            t
            for m, t in zip(reversed(messages), reversed(texts), strict=True)
            if m["role"] == "user"
        ),
        "",
    )
    last_role = messages[-1]["role"]
    tools = [
        t["function"]["name"]
        for t in body.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = body.get("tool_choice")
    forced = None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        forced = choice["function"].get("name")
    fmt = body.get("response_format")
    return Prompt(
        texts=texts,
        last_user_text=last_user,
        last_is_user=last_role == "user",
        tool_result=texts[-1] if last_role in ("tool", "function") else None,
        tools=tools,
        forced_tool=forced,
        tools_disabled=choice == "none",
        stop=_stop_list(body.get("stop")),
        max_tokens=_int(body, "max_completion_tokens", "max_tokens"),
        json_mode=isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"),
    )


def _logprobs(pieces: Sequence[str]) -> dict[str, Any]:
    content = [
        {"token": p, "logprob": -0.1, "bytes": list(p.encode()), "top_logprobs": []} for p in pieces
    ]
    return {"content": content, "refusal": None}


def _n(body: dict[str, Any]) -> Any:
    n = body.get("n")
    return 1 if n is None else n


def _prompts(prompt: Any) -> list[str]:
    """Legacy `prompt`: a string, a list of strings, a token array or a list of token arrays."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [" ".join(map(str, prompt))]
    return [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompt]


class FakeOpenAI(FakeUpstream):
    name = "fake-openai"
    default_key = "sk-fake-openai"
    MODELS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("gpt-4o", "system"),
        ("gpt-4o-mini", "system"),
        ("gpt-4.1", "system"),
        ("o3-mini", "system"),
        ("gpt-3.5-turbo-instruct", "system"),
        ("text-embedding-3-small", "system"),
    )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.post("/v1/embeddings", self.embeddings),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model}", self.get_model),
        ]

    # -- protocol hooks --------------------------------------------------------------------------

    def error(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        **_: Any,
    ) -> web.Response:
        default_type, default_code = _ERROR_TYPES.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        err = {"message": message, "type": type or default_type, "param": param}
        err["code"] = code or default_code
        return json_response({"error": err}, status, headers)

    def check_request(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization")
        if auth == f"Bearer {self.key}":
            return None
        if not auth:
            return self.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        shown = auth.removeprefix("Bearer ")[:8]
        return self.error(
            401,
            f"Incorrect API key provided: {shown}***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def model_of(self, request: web.Request, body: dict[str, Any]) -> str | None:
        model = body.get("model")
        return model if isinstance(model, str) and model else None

    # -- helpers ---------------------------------------------------------------------------------

    def _check(
        self, request: web.Request, required: Sequence[str]
    ) -> tuple[dict[str, Any], str] | web.Response:
        """Validate the body like the real API; return (body, model) or an error response."""
        body = request[BODY]
        if not isinstance(body, dict):
            return self.error(400, "We could not parse the JSON body of your request.")
        model = self.model_of(request, body)
        if model is None:
            return self.error(400, "you must provide a model parameter")
        for name in required:
            if name not in body:
                return self.error(
                    400,
                    f"Missing required parameter: '{name}'.",
                    param=name,
                    code="missing_required_parameter",
                )
        if "stream_options" in body and body.get("stream") is not True:
            return self.error(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        n = _n(body)
        if not isinstance(n, int) or not 1 <= n <= 128:
            return self.error(400, f"Invalid 'n': {n!r}.", param="n", code="invalid_value")
        return body, model

    @staticmethod
    def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    @staticmethod
    def _chunks(
        head: dict[str, Any], steps: Iterator[list[dict[str, Any]]], usage: dict[str, Any] | None
    ) -> Iterator[bytes]:
        """SSE frames: one chunk per step, the usage chunk (if any), then [DONE]."""
        if usage is not None:
            head = {**head, "usage": None}
        for choices in steps:
            yield sse({**head, "choices": choices})
        if usage is not None:
            yield sse({**head, "choices": [], "usage": usage})
        yield _DONE

    # -- chat completions ------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        checked = self._check(request, ("messages",))
        if isinstance(checked, web.Response):
            return checked
        body, model = checked
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return self.error(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                role = m.get("role") if isinstance(m, dict) else None
                return self.error(
                    400,
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                    "'user', 'function', 'tool', and 'developer'.",
                    param=f"messages[{i}].role",
                    code="invalid_value",
                )
        reply = make_reply(self.name, chat_prompt(body))
        n: int = _n(body)
        logprobs = body.get("logprobs") is True and reply.tool is None
        usage = None
        if not self.no_usage(request):
            usage = self.usage(reply.input_tokens, reply.output_tokens * n, self.cached_tokens)
        call_ids = ["call_" + rand_id(24) for _ in range(n)] if reply.tool else []
        head = {
            "id": "chatcmpl-" + rand_id(29),
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        finish = _FINISH[reply.finish]
        if not self.is_stream(request, body):
            choices = [
                {
                    "index": i,
                    "message": self._message(reply, call_ids[i] if call_ids else None),
                    "logprobs": _logprobs(reply.pieces) if logprobs else None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ]
            out = {"object": "chat.completion", **head, "choices": choices}
            if usage is not None:
                out["usage"] = usage
            return json_response(out)
        include = isinstance(opts := body.get("stream_options"), dict) and opts.get("include_usage")
        head = {"object": "chat.completion.chunk", **head}
        steps = self._chat_steps(reply, n, logprobs, call_ids, finish)
        return await self.stream(request, self._chunks(head, steps, usage if include else None))

    @staticmethod
    def _message(reply: Reply, call_id: str | None) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool is not None:
            fn = {"name": reply.tool, "arguments": reply.text}
            msg["content"] = None
            msg["tool_calls"] = [{"id": call_id, "type": "function", "function": fn}]
        msg["refusal"] = None
        msg["annotations"] = []
        return msg

    @staticmethod
    def _chat_steps(
        reply: Reply, n: int, logprobs: bool, call_ids: list[str], finish: str
    ) -> Iterator[list[dict[str, Any]]]:
        def step(deltas: Sequence[dict[str, Any]], lp: Any = None, fin: str | None = None) -> list:
            return [
                {"index": i, "delta": d, "logprobs": lp, "finish_reason": fin}
                for i, d in enumerate(deltas)
            ]

        if reply.tool is None:
            yield step([{"role": "assistant", "content": "", "refusal": None}] * n)
            for piece in reply.pieces:
                lp = _logprobs([piece]) if logprobs else None
                yield step([{"content": piece}] * n, lp)
        else:
            fn = {"name": reply.tool, "arguments": ""}
            yield step(
                [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"index": 0, "id": cid, "type": "function", "function": fn}],
                        "refusal": None,
                    }
                    for cid in call_ids
                ]
            )
            for piece in reply.pieces:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                yield step([delta] * n)
        yield step([{}] * n, fin=finish)

    # -- legacy completions ----------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        checked = self._check(request, ("prompt",))
        if isinstance(checked, web.Response):
            return checked
        body, model = checked
        n: int = _n(body)
        stop = _stop_list(body.get("stop"))
        max_tokens = _int(body, "max_tokens")
        prompt = Prompt(texts=[], stop=stop, max_tokens=16 if max_tokens is None else max_tokens)
        replies: list[Reply] = []
        for text in _prompts(body["prompt"]):
            prompt.texts, prompt.last_user_text = [text], text
            replies.extend([make_reply(self.name, prompt)] * n)
        usage = None
        if not self.no_usage(request):
            prompt_tokens = sum(r.input_tokens for r in replies[::n])
            completion_tokens = sum(r.output_tokens for r in replies)
            usage = self.usage(prompt_tokens, completion_tokens, self.cached_tokens)
            del usage["completion_tokens_details"]
        head = {
            "id": "cmpl-" + rand_id(29),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": _FINGERPRINT,
        }
        if not self.is_stream(request, body):
            choices = [
                {"text": r.text, "index": i, "logprobs": None, "finish_reason": _FINISH[r.finish]}
                for i, r in enumerate(replies)
            ]
            out = {**head, "choices": choices}
            if usage is not None:
                out["usage"] = usage
            return json_response(out)

        def steps() -> Iterator[list[dict[str, Any]]]:
            for i, r in enumerate(replies):
                for piece in r.pieces:
                    yield [{"text": piece, "index": i, "logprobs": None, "finish_reason": None}]
                fin = _FINISH[r.finish]
                yield [{"text": "", "index": i, "logprobs": None, "finish_reason": fin}]

        opts = body.get("stream_options")
        include = isinstance(opts, dict) and opts.get("include_usage")
        return await self.stream(request, self._chunks(head, steps(), usage if include else None))

    # -- embeddings ------------------------------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        checked = self._check(request, ("input",))
        if isinstance(checked, web.Response):
            return checked
        body, model = checked
        inputs = body["input"]
        if isinstance(inputs, str) or (inputs and all(isinstance(t, int) for t in inputs)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or any(not x for x in inputs):
            return self.error(
                400,
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
            )
        dims = _int(body, "dimensions") or 8
        b64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            is_text = isinstance(item, str)
            vec = embedding(item if is_text else ",".join(map(str, item)), dims)
            tokens += len(item.split()) if is_text else len(item)
            value = base64.b64encode(float32_le(vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        out: dict[str, Any] = {"object": "list", "data": data, "model": model}
        if not self.no_usage(request):
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return json_response(out)

    # -- models ----------------------------------------------------------------------------------

    @classmethod
    def _model(cls, model_id: str, owner: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1715367049, "owned_by": owner}

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        return json_response({"object": "list", "data": [self._model(*m) for m in self.MODELS]})

    async def get_model(self, request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model"]
        owner = dict(self.MODELS).get(model_id)
        if owner is None:
            return self.error(
                404,
                f"The model '{model_id}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return json_response(self._model(model_id, owner))
