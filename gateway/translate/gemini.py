"""OpenAI Chat Completions / Embeddings ⇄ Gemini generateContent / batchEmbedContents."""

from __future__ import annotations

import base64
import sys
from array import array
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
    openai_usage,
    parse_data_url,
    random_id,
    reject_legacy_functions,
    stop_list,
)
from gateway.usage import usage_from_gemini

_FINISH_FROM_GEMINI = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

# Gemini 3 rejects a replayed functionCall without the thought signature it came with. The
# signature travels to OpenAI clients as `extra_content.google.thought_signature` on the tool
# call (as Google's own OpenAI-compatible endpoint does) and is also remembered here by call id,
# for clients (and Anthropic clients) that drop unknown fields.
_SIGNATURES: dict[str, str] = {}
_SIGNATURES_MAX = 8192
# Documented stand-in for histories whose signatures are unknown (e.g. other models' turns).
_SKIP_SIGNATURE = "skip_thought_signature_validator"

_IMAGE_MIME = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}


def _remember_signature(call_id: str, signature: str) -> None:
    if len(_SIGNATURES) >= _SIGNATURES_MAX:
        del _SIGNATURES[next(iter(_SIGNATURES))]
    _SIGNATURES[call_id] = signature


# --------------------------------------------------------------------------------------------
# JSON Schema → Gemini Schema (an OpenAPI 3.0 subset), best effort

_SCHEMA_PASS = frozenset(
    (
        "description",
        "nullable",
        "required",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "propertyOrdering",
        "title",
        "minLength",
        "maxLength",
        "pattern",
        "minProperties",
        "maxProperties",
        "example",
        "default",
    )
)
_FORMATS = {
    "STRING": ("enum", "date-time"),
    "NUMBER": ("float", "double"),
    "INTEGER": ("int32", "int64"),
}


def _resolve_ref(ref: str, root: dict[str, Any]) -> dict[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for key in ref[2:].split("/"):
        if not isinstance(node, dict):
            return None
        node = node.get(key.replace("~1", "/").replace("~0", "~"))
    return node if isinstance(node, dict) else None


def _schema(s: Any, root: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    if not isinstance(s, dict) or depth > 24:
        return {}
    ref = s.get("$ref")
    if isinstance(ref, str):
        target = _resolve_ref(ref, root)
        if target is None:
            return {}
        s = {**target, **{k: v for k, v in s.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    stype = s.get("type")
    if isinstance(stype, list):
        kinds = [t for t in stype if t != "null"]
        if len(kinds) < len(stype):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = str(kinds[0]).upper()
        elif kinds:
            out["anyOf"] = [{"type": str(t).upper()} for t in kinds]
    elif isinstance(stype, str):
        out["type"] = stype.upper()
    for key, value in s.items():
        if key == "properties":
            if isinstance(value, dict):
                out["properties"] = {k: _schema(v, root, depth + 1) for k, v in value.items()}
        elif key == "items":
            if isinstance(value, dict):
                out["items"] = _schema(value, root, depth + 1)
        elif key in ("anyOf", "oneOf"):
            if not isinstance(value, list):
                continue
            branches = []
            for branch in value:
                if isinstance(branch, dict) and branch.get("type") == "null":
                    out["nullable"] = True
                else:
                    branches.append(_schema(branch, root, depth + 1))
            if len(branches) == 1:
                for k, v in branches[0].items():
                    out.setdefault(k, v)
            elif branches:
                out["anyOf"] = branches
        elif key == "allOf":
            if isinstance(value, list):
                for branch in value:
                    for k, v in _schema(branch, root, depth + 1).items():
                        out.setdefault(k, v)
        elif key == "enum":
            if isinstance(value, list):
                if None in value:
                    out["nullable"] = True
                out["enum"] = [
                    v if isinstance(v, str) else dumps(v) for v in value if v is not None
                ]
        elif key == "const":
            out["enum"] = [value if isinstance(value, str) else dumps(value)]
        elif key in _SCHEMA_PASS:
            out[key] = value
    if "type" not in out and "anyOf" not in out:
        if "properties" in out:
            out["type"] = "OBJECT"
        elif "items" in out:
            out["type"] = "ARRAY"
        elif "enum" in out:
            out["type"] = "STRING"
    if "enum" in out and out.get("type") not in (None, "STRING"):
        if out["type"] == "INTEGER":
            out["format"] = "enum"
        else:
            del out["enum"]
    fmt = s.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt
    return out


def json_schema_to_gemini(schema: Any) -> dict[str, Any]:
    """A JSON Schema → a Gemini `Schema` (unsupported keywords dropped, $refs inlined)."""
    return _schema(schema, schema if isinstance(schema, dict) else {})


# --------------------------------------------------------------------------------------------
# OpenAI request → Gemini request


def _media_part(url: Any) -> dict[str, Any]:
    if not isinstance(url, str):
        raise InvalidRequest("image_url.url must be a string", param="messages")
    if url.startswith("data:"):
        mime, data = parse_data_url(url)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://", "gs://")):
        ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _IMAGE_MIME.get(ext, "image/jpeg"), "fileUri": url}}
    raise InvalidRequest(
        "image_url.url must be an http(s) URL or a base64 data: URL", param="messages"
    )


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("message content must be a string or an array", param="messages")
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            raise InvalidRequest("content parts must be objects", param="messages")
        ptype = part.get("type")
        if ptype == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif ptype == "image_url":
            image = part.get("image_url")
            parts.append(_media_part(image.get("url") if isinstance(image, dict) else image))
        elif ptype == "refusal":
            if part.get("refusal"):
                parts.append({"text": part["refusal"]})
        elif ptype == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = audio.get("format") or "wav"
            mime = "audio/mpeg" if fmt == "mp3" else f"audio/{fmt}"
            parts.append({"inlineData": {"mimeType": mime, "data": audio.get("data") or ""}})
        elif ptype == "file":
            file = part.get("file") or {}
            file_data = file.get("file_data")
            if not isinstance(file_data, str):
                raise InvalidRequest(
                    "file content parts must carry file_data (file_id is not supported)",
                    param="messages",
                )
            if file_data.startswith("data:"):
                mime, data = parse_data_url(file_data)
            else:
                mime, data = "application/pdf", file_data
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        else:
            raise InvalidRequest(f"unsupported content part type {ptype!r}", param="messages")
    return parts


def _function_call_part(call: Any, names: dict[str, str]) -> dict[str, Any]:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise InvalidRequest("only function tool calls are supported", param="messages")
    fn = call.get("function") or {}
    name = fn.get("name")
    if not name:
        raise InvalidRequest("tool calls need a function name", param="messages")
    arguments = fn.get("arguments")
    if arguments is None or arguments == "":
        args: Any = {}
    elif isinstance(arguments, dict):
        args = arguments
    else:
        try:
            args = loads(arguments)
        except (ValueError, TypeError):
            args = None
        if not isinstance(args, dict):
            raise InvalidRequest(
                "tool call arguments must be a JSON object encoded as a string", param="messages"
            )
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    call_id = call.get("id")
    if call_id:
        names[call_id] = name
    extra = call.get("extra_content")
    signature = None
    if isinstance(extra, dict) and isinstance(extra.get("google"), dict):
        signature = extra["google"].get("thought_signature")
    if not signature and call_id:
        signature = _SIGNATURES.get(call_id)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_response_part(msg: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = names.get(call_id) if call_id else None
    if name is None:
        name = msg.get("name")
        if not name:
            raise InvalidRequest(
                f"tool message tool_call_id {call_id!r} matches no earlier assistant tool call",
                param="messages",
            )
    content = msg.get("content")
    if isinstance(content, list):
        text = "".join(
            p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    else:
        text = content if isinstance(content, str) else ""
    response: Any = None
    if text.lstrip().startswith("{"):
        try:
            response = loads(text)
        except ValueError:
            response = None
    if not isinstance(response, dict):
        response = {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _gemini_tools(tools: Any) -> list[dict[str, Any]]:
    decls = []
    for fn in function_tools(tools):
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params.get("properties"):
            # Gemini rejects an OBJECT schema with no properties: leave it out instead.
            decl["parameters"] = json_schema_to_gemini(params)
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if not name:
            raise InvalidRequest("tool_choice.function.name is required", param="tool_choice")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    else:
        raise InvalidRequest(
            "tool_choice must be auto, none, required or a named function", param="tool_choice"
        )
    return {"functionCallingConfig": config}


def openai_request_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completions request → a Gemini generateContent body."""
    messages = messages_of(body)
    reject_legacy_functions(body)
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name
    for msg in messages:
        if not isinstance(msg, dict):
            raise InvalidRequest("messages must be objects", param="messages")
        role = msg.get("role")
        if role == "user":
            grole = "user"
            parts = _user_parts(msg.get("content"))
        elif role == "assistant":
            grole = "model"
            if msg.get("function_call"):
                raise InvalidRequest(
                    "legacy function_call messages are not supported; use tool_calls",
                    param="messages",
                )
            parts = _user_parts(msg.get("content"))
            calls = msg.get("tool_calls")
            if calls:
                first = len(parts)
                parts.extend(_function_call_part(call, names) for call in calls)
                if "thoughtSignature" not in parts[first]:
                    parts[first]["thoughtSignature"] = _SKIP_SIGNATURE
        elif role == "tool":
            grole = "user"
            parts = [_function_response_part(msg, names)]
        elif role in ("system", "developer"):
            for part in _user_parts(msg.get("content")):
                if "text" not in part:
                    raise InvalidRequest("system messages may contain only text", param="messages")
                system.append(part)
            continue
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
        if not parts:
            continue
        if contents and contents[-1]["role"] == grole:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": grole, "parts": parts})
    if not contents:
        raise InvalidRequest("messages must contain a user message", param="messages")

    req: dict[str, Any] = {"contents": contents}
    if system:
        req["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if tools:
        req["tools"] = _gemini_tools(tools)
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            req["toolConfig"] = config

    gen: dict[str, Any] = {}
    stop = stop_list(body.get("stop"))
    if stop:
        gen["stopSequences"] = stop
    max_tokens = max_tokens_of(body)
    if max_tokens is not None:
        gen["maxOutputTokens"] = max_tokens
    n = check_n(body)
    if n is not None:
        gen["candidateCount"] = n
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        value = body.get(src)
        if value is not None:
            gen[dst] = value
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        ftype = fmt.get("type")
        if ftype == "json_object":
            gen["responseMimeType"] = "application/json"
        elif ftype == "json_schema":
            gen["responseMimeType"] = "application/json"
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if isinstance(schema, dict) and schema:
                gen["responseSchema"] = json_schema_to_gemini(schema)
        elif ftype not in (None, "text"):
            raise InvalidRequest(
                f"unsupported response_format type {ftype!r}", param="response_format"
            )
    if gen:
        req["generationConfig"] = gen
    return req


# --------------------------------------------------------------------------------------------
# Gemini response → OpenAI response


def _tool_call(fc: dict[str, Any], signature: Any) -> dict[str, Any]:
    call_id = "call_" + random_id(24)
    call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": fc.get("name") or "", "arguments": dumps(fc.get("args") or {})},
    }
    if isinstance(signature, str) and signature:
        call["extra_content"] = {"google": {"thought_signature": signature}}
        _remember_signature(call_id, signature)
    return call


def _finish_reason(reason: Any, has_calls: bool) -> str:
    mapped = _FINISH_FROM_GEMINI.get(reason, "stop")
    if has_calls and mapped == "stop":
        return "tool_calls"
    return mapped


def _gemini_usage(meta: Any) -> dict[str, Any]:
    thoughts = meta.get("thoughtsTokenCount") if isinstance(meta, dict) else None
    return openai_usage(usage_from_gemini(meta), thoughts if isinstance(thoughts, int) else None)


def gemini_response_to_openai(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """A Gemini GenerateContentResponse → an OpenAI chat.completion object."""
    choices = []
    candidates = resp.get("candidates") or ()
    for pos, cand in enumerate(candidates):
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        content = cand.get("content") or {}
        for part in content.get("parts") or ():
            if "text" in part:
                if not part.get("thought"):
                    texts.append(part["text"])
            elif "functionCall" in part:
                tool_calls.append(_tool_call(part["functionCall"], part.get("thoughtSignature")))
        message = assistant_message(texts, tool_calls)
        choices.append(
            {
                "index": cand.get("index", pos),
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(cand.get("finishReason"), bool(tool_calls)),
            }
        )
    if not choices:
        # The prompt itself was blocked (promptFeedback.blockReason).
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": "content_filter",
            }
        )
    return {
        "id": "chatcmpl-" + (resp.get("responseId") or random_id()),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": choices,
        "usage": _gemini_usage(resp.get("usageMetadata")),
    }


class GeminiToOpenAIStream(OpenAIChunkStream):
    """Gemini streamGenerateContent (alt=sse) events in, OpenAI chat.completion.chunk dicts out."""

    __slots__ = ("_meta", "_state")

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        # candidate index → [tool calls so far, finished]
        self._state: dict[int, list[Any]] = {}
        self._meta: Any = None

    def _candidate(self, index: int, out: list[dict[str, Any]]) -> list[Any]:
        state = self._state.get(index)
        if state is None:
            state = self._state[index] = [0, False]
            out.append(self._role_chunk(index))
        return state

    def _openai_usage(self) -> dict[str, Any]:
        return _gemini_usage(self._meta)

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        error = data.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamError(message or "the upstream stream reported an error")
        meta = data.get("usageMetadata")
        if meta:
            self._meta = meta
            self.usage = usage_from_gemini(meta)
        if not self._started:
            self._started = True
            if data.get("responseId"):
                self._id = "chatcmpl-" + data["responseId"]
        out: list[dict[str, Any]] = []
        candidates = data.get("candidates")
        if not candidates:
            feedback = data.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                state = self._candidate(0, out)
                if not state[1]:
                    state[1] = True
                    out.append(self._chunk({}, "content_filter"))
            return out
        for pos, cand in enumerate(candidates):
            index = cand.get("index", pos)
            state = self._candidate(index, out)
            content = cand.get("content")
            parts = content.get("parts") if content else None
            if parts:
                for part in parts:
                    if "text" in part:
                        text = part["text"]
                        if text and not part.get("thought"):
                            out.append(self._chunk({"content": text}, None, index))
                    elif "functionCall" in part:
                        call = _tool_call(part["functionCall"], part.get("thoughtSignature"))
                        call["index"] = state[0]
                        state[0] += 1
                        out.append(self._chunk({"tool_calls": [call]}, None, index))
            reason = cand.get("finishReason")
            if reason and not state[1]:
                state[1] = True
                out.append(self._chunk({}, _finish_reason(reason, state[0] > 0), index))
        return out


# --------------------------------------------------------------------------------------------
# Embeddings


def openai_embeddings_to_gemini(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An OpenAI embeddings request → a Gemini batchEmbedContents body."""
    value = body.get("input")
    if isinstance(value, str):
        inputs = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        inputs = value
    else:
        raise InvalidRequest(
            "input must be a string or a non-empty array of strings for this model "
            "(token arrays are not supported)",
            param="input",
        )
    name = upstream_model if upstream_model.startswith("models/") else "models/" + upstream_model
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
    requests = []
    for text in inputs:
        entry: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dims is not None:
            entry["outputDimensionality"] = dims
        requests.append(entry)
    return {"requests": requests}


_BIG_ENDIAN = sys.byteorder == "big"


def _float32_base64(values: list[float]) -> str:
    packed = array("f", values)
    if _BIG_ENDIAN:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def gemini_embeddings_to_openai(
    resp: dict[str, Any], model: str, encoding_format: str | None
) -> dict[str, Any]:
    """A Gemini batchEmbedContents response → an OpenAI embeddings list."""
    as_base64 = encoding_format == "base64"
    data = []
    for index, item in enumerate(resp.get("embeddings") or ()):
        values = item.get("values") or []
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": _float32_base64(values) if as_base64 else values,
            }
        )
    meta = resp.get("usageMetadata")
    tokens = meta.get("promptTokenCount") if isinstance(meta, dict) else None
    tokens = tokens if isinstance(tokens, int) else 0
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
