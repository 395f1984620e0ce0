"""OpenAI Chat Completions ⇄ Anthropic Messages: requests, responses and streams."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from gateway.errors import InvalidRequest, UpstreamError
from gateway.translate._common import (
    OpenAIChunkStream,
    assistant_message,
    check_n,
    dumps,
    function_tools,
    loads,
    max_tokens_of,
    messages_of,
    now,
    openai_content_text,
    openai_usage,
    parse_data_url,
    random_id,
    reject_legacy_functions,
    stop_list,
)
from gateway.usage import Usage, usage_from_anthropic, usage_from_openai

# Anthropic stop_reason → OpenAI finish_reason.
_FINISH_FROM_ANTHROPIC: dict[Any, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# OpenAI finish_reason → Anthropic stop_reason.
_STOP_FROM_OPENAI: dict[Any, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _empty_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


# --------------------------------------------------------------------------------------------
# OpenAI request → Anthropic request


def _image_source(url: Any) -> dict[str, Any]:
    if not isinstance(url, str):
        raise InvalidRequest("image_url.url must be a string", param="messages")
    if url.startswith("data:"):
        mime, data = parse_data_url(url)
        return {"type": "base64", "media_type": mime, "data": data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise InvalidRequest(
        "image_url.url must be an http(s) URL or a base64 data: URL", param="messages"
    )


def _file_block(part: dict[str, Any]) -> dict[str, Any]:
    file = part.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
        raise InvalidRequest(
            "file content parts must carry file_data (file_id is not supported for this model)",
            param="messages",
        )
    file_data = file["file_data"]
    if file_data.startswith("data:"):
        mime, data = parse_data_url(file_data)
    else:
        mime, data = "application/pdf", file_data
    if mime.startswith("image/"):
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    if mime == "application/pdf":
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": mime, "data": data},
        }
    elif mime.startswith("text/"):
        try:
            text = base64.b64decode(data).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidRequest("file_data is not valid base64 text", param="messages") from None
        block = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": text},
        }
    else:
        raise InvalidRequest(
            f"file type {mime!r} is not supported for this model", param="messages"
        )
    filename = file.get("filename")
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


def _openai_content_to_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content → Anthropic content blocks (empty text dropped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("message content must be a string or an array", param="messages")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            raise InvalidRequest("content parts must be objects", param="messages")
        ptype = part.get("type")
        if ptype == "text":
            text = part.get("text")
            if text:
                block = {"type": "text", "text": text}
                cache_control = part.get("cache_control")
                if cache_control:
                    block["cache_control"] = cache_control
                blocks.append(block)
        elif ptype == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append({"type": "image", "source": _image_source(url)})
        elif ptype == "refusal":
            text = part.get("refusal")
            if text:
                blocks.append({"type": "text", "text": text})
        elif ptype == "file":
            blocks.append(_file_block(part))
        elif ptype == "input_audio":
            raise InvalidRequest("audio input is not supported for this model", param="messages")
        else:
            raise InvalidRequest(f"unsupported content part type {ptype!r}", param="messages")
    return blocks


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    """Client-sent tool call arguments (JSON string) → object."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        try:
            value = loads(arguments)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    raise InvalidRequest(
        "tool call arguments must be a JSON object encoded as a string", param="messages"
    )


def _assistant_blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _openai_content_to_blocks(msg.get("content"))
    if msg.get("function_call"):
        raise InvalidRequest(
            "legacy function_call messages are not supported; use tool_calls", param="messages"
        )
    tool_calls = msg.get("tool_calls")
    if tool_calls:
        for call in tool_calls:
            if not isinstance(call, dict) or call.get("type", "function") != "function":
                raise InvalidRequest("only function tool calls are supported", param="messages")
            fn = call.get("function") or {}
            call_id = call.get("id")
            name = fn.get("name")
            if not call_id or not name:
                raise InvalidRequest("tool calls need an id and a function name", param="messages")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": name,
                    "input": _parse_arguments(fn.get("arguments")),
                }
            )
    return blocks


def _tool_result_block(msg: dict[str, Any]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not call_id:
        raise InvalidRequest("tool messages need a tool_call_id", param="messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        inner = _openai_content_to_blocks(content)
        if inner:
            block["content"] = inner
    return block


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1:
        block = blocks[0]
        if block["type"] == "text" and "cache_control" not in block:
            text: str = block["text"]
            return text
    return blocks


def _anthropic_tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for fn in function_tools(tools):
        params = fn.get("parameters")
        if not isinstance(params, dict) or not params:
            schema: dict[str, Any] = _empty_schema()
        elif "type" not in params:
            schema = {"type": "object", **params}
        else:
            schema = params
        entry: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            entry["description"] = fn["description"]
        entry["input_schema"] = schema
        out.append(entry)
    return out


def _anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if not name:
            raise InvalidRequest("tool_choice.function.name is required", param="tool_choice")
        out = {"type": "tool", "name": name}
    else:
        raise InvalidRequest(
            "tool_choice must be auto, none, required or a named function", param="tool_choice"
        )
    if parallel is False:
        if out is None:
            out = {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


def openai_request_to_anthropic(
    body: dict[str, Any], upstream_model: str, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """An OpenAI chat.completions request → an Anthropic Messages request."""
    messages = messages_of(body)
    n = check_n(body)
    if n is not None and n != 1:
        raise InvalidRequest("this model supports only n=1", param="n")
    reject_legacy_functions(body)

    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    needs_reorder = False
    for msg in messages:
        if not isinstance(msg, dict):
            raise InvalidRequest("messages must be objects", param="messages")
        role = msg.get("role")
        if role == "user":
            arole = "user"
            blocks = _openai_content_to_blocks(msg.get("content"))
        elif role == "assistant":
            arole = "assistant"
            blocks = _assistant_blocks(msg)
        elif role == "tool":
            arole = "user"
            blocks = [_tool_result_block(msg)]
        elif role in ("system", "developer"):
            for block in _openai_content_to_blocks(msg.get("content")):
                if block["type"] != "text":
                    raise InvalidRequest("system messages may contain only text", param="messages")
                system.append(block)
            continue
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
        if not blocks:
            continue
        if out and out[-1]["role"] == arole:
            prev = out[-1]["content"]
            if role == "tool" and prev[-1]["type"] != "tool_result":
                needs_reorder = True
            prev.extend(blocks)
        else:
            out.append({"role": arole, "content": blocks})

    if not out:
        raise InvalidRequest("messages must contain a user message", param="messages")
    # Anthropic rejects a final assistant (prefill) turn that ends with whitespace.
    last = out[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        text = last["content"][-1]["text"].rstrip()
        if text:
            last["content"][-1] = {**last["content"][-1], "text": text}
        else:
            last["content"].pop()
            if not last["content"]:
                out.pop()
    for entry in out:
        content = entry["content"]
        if needs_reorder and entry["role"] == "user":
            # tool_result blocks must open the user turn that follows the tool_use turn.
            results = [b for b in content if b["type"] == "tool_result"]
            if results:
                content = results + [b for b in content if b["type"] != "tool_result"]
        entry["content"] = _collapse(content)

    req: dict[str, Any] = {"model": upstream_model, "messages": out}
    max_tokens = max_tokens_of(body)
    req["max_tokens"] = max_tokens if max_tokens is not None else default_max_tokens
    if system:
        req["system"] = _collapse(system)
    stop = stop_list(body.get("stop"))
    if stop:
        stop = [s for s in stop if s.strip()]
        if stop:
            req["stop_sequences"] = stop
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise InvalidRequest("temperature must be a number", param="temperature")
        # OpenAI allows 0..2, Anthropic 0..1.
        req["temperature"] = 1.0 if temperature > 1 else temperature
    if body.get("top_p") is not None:
        req["top_p"] = body["top_p"]
    if body.get("top_k") is not None:
        req["top_k"] = body["top_k"]
    user = body.get("user")
    if isinstance(user, str) and user:
        req["metadata"] = {"user_id": user}
    tools = body.get("tools")
    if tools:
        req["tools"] = _anthropic_tools(tools)
        choice = _anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            req["tool_choice"] = choice
    if "stream" in body:
        req["stream"] = bool(body["stream"])
    return req


# --------------------------------------------------------------------------------------------
# Anthropic response → OpenAI response


def _anthropic_usage_to_openai(raw: Any) -> dict[str, Any]:
    return openai_usage(usage_from_anthropic(raw))


def _tool_use_to_call(block: dict[str, Any], arguments: str) -> dict[str, Any]:
    """An Anthropic tool_use block → an OpenAI tool call carrying `arguments`."""
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def anthropic_response_to_openai(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic message → an OpenAI chat.completion object."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in resp.get("content") or ():
        btype = block.get("type")
        if btype == "text":
            texts.append(block.get("text") or "")
        elif btype == "tool_use":
            tool_calls.append(_tool_use_to_call(block, dumps(block.get("input"))))
    message = assistant_message(texts, tool_calls)
    return {
        "id": "chatcmpl-" + (resp.get("id") or random_id()),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH_FROM_ANTHROPIC.get(resp.get("stop_reason"), "stop"),
            }
        ],
        "usage": _anthropic_usage_to_openai(resp.get("usage")),
    }


# --------------------------------------------------------------------------------------------
# Anthropic request → OpenAI request


def _image_part(source: Any) -> dict[str, Any]:
    if isinstance(source, dict):
        stype = source.get("type")
        if stype == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            return {"type": "image_url", "image_url": {"url": url}}
        if stype == "url":
            return {"type": "image_url", "image_url": {"url": source.get("url")}}
    raise InvalidRequest("image sources must be base64 or url", param="messages")


def _document_parts(block: dict[str, Any]) -> list[dict[str, Any]]:
    source = block.get("source") or {}
    stype = source.get("type")
    if stype == "text":
        return [{"type": "text", "text": source.get("data") or ""}]
    if stype == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return [{"type": "text", "text": inner}]
        return _anthropic_blocks_to_parts(inner or ())
    if stype == "base64" and source.get("media_type") == "application/pdf":
        return [
            {
                "type": "file",
                "file": {
                    "filename": block.get("title") or "document.pdf",
                    "file_data": f"data:application/pdf;base64,{source.get('data')}",
                },
            }
        ]
    raise InvalidRequest(
        "documents must be text, content or base64 PDF for this model", param="messages"
    )


def _anthropic_blocks_to_parts(blocks: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in blocks:
        btype = block.get("type")
        if btype == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif btype == "image":
            parts.append(_image_part(block.get("source")))
        elif btype == "document":
            parts.extend(_document_parts(block))
        elif btype in ("thinking", "redacted_thinking"):
            continue
        else:
            raise InvalidRequest(f"unsupported content block type {btype!r}", param="messages")
    return parts


def _tool_result_message(block: dict[str, Any], images: list[dict[str, Any]]) -> dict[str, Any]:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for part in _anthropic_blocks_to_parts(content):
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                # OpenAI tool messages carry text only: images follow in a user message.
                images.append(part)
        text = "\n".join(texts)
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def anthropic_request_to_openai(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An Anthropic Messages request → an OpenAI chat.completions request."""
    messages = messages_of(body)
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        if isinstance(system, str):
            out.append({"role": "system", "content": system})
        elif isinstance(system, list):
            text = "\n".join(b.get("text") or "" for b in system if b.get("type") == "text")
            if text:
                out.append({"role": "system", "content": text})
        else:
            raise InvalidRequest("system must be a string or an array of blocks", param="system")
    for msg in messages:
        if not isinstance(msg, dict):
            raise InvalidRequest("messages must be objects", param="messages")
        role = msg.get("role")
        content = msg.get("content")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise InvalidRequest("message content must be a string or an array", param="messages")
        if role == "user":
            parts: list[dict[str, Any]] = []
            for block in content:
                if block.get("type") == "tool_result":
                    out.append(_tool_result_message(block, parts))
                else:
                    parts.extend(_anthropic_blocks_to_parts((block,)))
            if parts:
                if len(parts) == 1 and parts[0]["type"] == "text":
                    out.append({"role": "user", "content": parts[0]["text"]})
                else:
                    out.append({"role": "user", "content": parts})
        else:
            texts: list[str] = []
            tool_calls: list[dict[str, Any]] = []
            for block in content:
                btype = block.get("type")
                if btype == "text":
                    texts.append(block.get("text") or "")
                elif btype == "tool_use":
                    tool_calls.append(_tool_use_to_call(block, dumps(block.get("input") or {})))
                elif btype in ("thinking", "redacted_thinking"):
                    continue
                else:
                    raise InvalidRequest(
                        f"unsupported assistant content block type {btype!r}", param="messages"
                    )
            if not texts and not tool_calls:
                continue
            amsg: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(texts) if texts else None,
            }
            if tool_calls:
                amsg["tool_calls"] = tool_calls
            out.append(amsg)

    req: dict[str, Any] = {"model": upstream_model, "messages": out}
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        req["max_completion_tokens"] = max_tokens
    stop = body.get("stop_sequences")
    if stop:
        req["stop"] = stop
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            req[key] = body[key]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        req["user"] = metadata["user_id"]
    tools = body.get("tools")
    if tools:
        otools = []
        for tool in tools:
            ttype = tool.get("type")
            if ttype not in (None, "custom"):
                raise InvalidRequest(
                    f"server tool {ttype!r} is not supported for this model", param="tools"
                )
            fn: dict[str, Any] = {"name": tool.get("name")}
            if tool.get("description"):
                fn["description"] = tool["description"]
            fn["parameters"] = tool.get("input_schema") or _empty_schema()
            otools.append({"type": "function", "function": fn})
        req["tools"] = otools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            ctype = choice.get("type")
            if ctype == "auto":
                req["tool_choice"] = "auto"
            elif ctype == "any":
                req["tool_choice"] = "required"
            elif ctype == "none":
                req["tool_choice"] = "none"
            elif ctype == "tool":
                req["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
            else:
                raise InvalidRequest(f"unsupported tool_choice type {ctype!r}", param="tool_choice")
            if choice.get("disable_parallel_tool_use") and ctype != "none":
                req["parallel_tool_calls"] = False
    if body.get("stream"):
        req["stream"] = True
        req["stream_options"] = {"include_usage": True}
    return req


# --------------------------------------------------------------------------------------------
# OpenAI response → Anthropic response


def _upstream_arguments(arguments: Any) -> dict[str, Any]:
    """Model-produced arguments: invalid JSON (e.g. cut by max tokens) becomes {}."""
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments:
        try:
            value = loads(arguments)
        except ValueError:
            return {}
        if isinstance(value, dict):
            return value
    return {}


def _anthropic_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _message_id(openai_id: Any) -> str:
    if isinstance(openai_id, str) and openai_id:
        return "msg_" + openai_id.removeprefix("chatcmpl-")
    return "msg_" + random_id()


def openai_response_to_anthropic(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion object → an Anthropic message."""
    choices = resp.get("choices") or ()
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = openai_content_text(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal:
        content.append({"type": "text", "text": refusal})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + random_id(),
                "name": fn.get("name"),
                "input": _upstream_arguments(fn.get("arguments")),
            }
        )
    stop_reason = _STOP_FROM_OPENAI.get(choice.get("finish_reason"), "end_turn")
    if refusal and stop_reason == "end_turn":
        stop_reason = "refusal"
    return {
        "id": _message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(usage_from_openai(resp.get("usage"))),
    }


# --------------------------------------------------------------------------------------------
# Streams


class AnthropicToOpenAIStream(OpenAIChunkStream):
    """Anthropic SSE events in, OpenAI chat.completion.chunk dicts out."""

    __slots__ = ("_block_tool", "_finished", "_raw_usage", "_tool_count")

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        self._finished = False
        self._tool_count = 0
        self._block_tool: dict[int, int] = {}
        self._raw_usage: dict[str, Any] = {}

    def _out(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._role_chunk()]

    def _record_usage(self, raw: Any) -> None:
        if isinstance(raw, dict):
            for key, value in raw.items():
                if value is not None:
                    self._raw_usage[key] = value
            self.usage = usage_from_anthropic(self._raw_usage)

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        etype = event or data.get("type")
        if etype == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                if text:
                    out = self._out()
                    out.append(self._chunk({"content": text}))
                    return out
            elif dtype == "input_json_delta":
                fragment = delta.get("partial_json")
                tool = self._block_tool.get(data.get("index", -1))
                if fragment and tool is not None:
                    out = self._out()
                    out.append(
                        self._chunk(
                            {"tool_calls": [{"index": tool, "function": {"arguments": fragment}}]}
                        )
                    )
                    return out
            return []
        if etype == "content_block_start":
            block = data.get("content_block") or {}
            btype = block.get("type")
            if btype == "text":
                out = self._out()
                if block.get("text"):
                    out.append(self._chunk({"content": block["text"]}))
                return out
            if btype == "tool_use":
                tool = self._tool_count
                self._tool_count += 1
                self._block_tool[data.get("index", -1)] = tool
                out = self._out()
                call = {
                    "index": tool,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                out.append(self._chunk({"tool_calls": [call]}))
                return out
            return []
        if etype == "message_start":
            message = data.get("message") or {}
            if not self._started and message.get("id"):
                self._id = "chatcmpl-" + message["id"]
            self._record_usage(message.get("usage"))
            return self._out()
        if etype == "message_delta":
            self._record_usage(data.get("usage"))
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason and not self._finished:
                self._finished = True
                out = self._out()
                out.append(self._chunk({}, _FINISH_FROM_ANTHROPIC.get(stop_reason, "stop")))
                return out
            return []
        if etype == "error":
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamError(message or "the upstream stream reported an error")
        return []


class OpenAIToAnthropicStream:
    """OpenAI chat.completion.chunk dicts in, Anthropic (event, data) pairs out."""

    __slots__ = (
        "_block",
        "_finish_reason",
        "_id",
        "_model",
        "_open",
        "_open_tool",
        "_refused",
        "_tool_ids",
        "_tools",
        "usage",
    )

    def __init__(self, model: str) -> None:
        self.usage = Usage()
        self._model = model
        self._id: str | None = None
        self._block = -1  # index of the last block started
        self._open: str | None = None  # "text" or "tool" while a block is open
        self._open_tool: int | None = None
        self._tools: dict[int, int] = {}  # OpenAI tool call index → Anthropic block index
        self._tool_ids: dict[str, int] = {}
        self._finish_reason: str | None = None
        self._refused = False

    def _message_start(self, chunk: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        self._id = _message_id(chunk.get("id") if chunk else None)
        return (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": self._id,
                    "type": "message",
                    "role": "assistant",
                    "model": self._model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": self.usage.input_tokens - self.usage.cached_tokens,
                        "output_tokens": 0,
                    },
                },
            },
        )

    def _close(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open is not None:
            events.append(
                ("content_block_stop", {"type": "content_block_stop", "index": self._block})
            )
            self._open = None
            self._open_tool = None

    def _text(self, text: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open != "text":
            self._close(events)
            self._block += 1
            self._open = "text"
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self._block,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self._block,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
        )

    def _tool_calls(self, calls: list[Any], events: list[tuple[str, dict[str, Any]]]) -> None:
        for pos, call in enumerate(calls):
            call_id = call.get("id")
            index = call.get("index")
            if index is None:
                # Some OpenAI-compatible servers omit the index: key on the id instead.
                if call_id and call_id in self._tool_ids:
                    index = self._tool_ids[call_id]
                elif call_id:
                    index = len(self._tool_ids) + pos
                else:
                    index = self._open_tool if self._open_tool is not None else pos
            fn = call.get("function") or {}
            block = self._tools.get(index)
            if block is None:
                self._close(events)
                self._block += 1
                block = self._block
                self._tools[index] = block
                if not call_id:
                    call_id = "toolu_" + random_id()
                self._tool_ids[call_id] = index
                self._open = "tool"
                self._open_tool = index
                events.append(
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": block,
                            "content_block": {
                                "type": "tool_use",
                                "id": call_id,
                                "name": fn.get("name") or "",
                                "input": {},
                            },
                        },
                    )
                )
            arguments = fn.get("arguments")
            if arguments:
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": block,
                            "delta": {"type": "input_json_delta", "partial_json": arguments},
                        },
                    )
                )

    def feed(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        choices = chunk.get("choices")
        if not choices and isinstance(chunk.get("error"), dict):
            raise UpstreamError(
                chunk["error"].get("message") or "the upstream stream reported an error"
            )
        usage = chunk.get("usage")
        if usage:
            self.usage = usage_from_openai(usage)
        events: list[tuple[str, dict[str, Any]]] = []
        if self._id is None:
            events.append(self._message_start(chunk))
        if choices:
            for choice in choices:
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if delta:
                    text = delta.get("content")
                    if text:
                        self._text(text, events)
                    refusal = delta.get("refusal")
                    if refusal:
                        self._text(refusal, events)
                        self._refused = True
                    calls = delta.get("tool_calls")
                    if calls:
                        self._tool_calls(calls, events)
                finish_reason = choice.get("finish_reason")
                if finish_reason:
                    self._finish_reason = finish_reason
        return events

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        if self._id is None:
            events.append(self._message_start(None))
        self._close(events)
        stop_reason = _STOP_FROM_OPENAI.get(self._finish_reason or "", "end_turn")
        if self._refused and stop_reason == "end_turn":
            stop_reason = "refusal"
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": _anthropic_usage(self.usage),
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events
