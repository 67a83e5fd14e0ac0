"""A loopback HTTP server that records what provider clients send and answers like the provider.

It speaks just enough of OpenAI chat completions (plain and streamed), the OpenAI Responses API
and Anthropic messages for the real client packages to parse its replies. Replies are scripted:
each request takes the next one (``{"tool": name, "args": {...}}`` for a tool call, or a text);
when the script runs out it answers ``"done"``. Only 127.0.0.1; ``close()`` stops it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from helpers import Loopback, Reply, Request


class RecordingServer:
    """Start with ``RecordingServer(script)``; ``url`` is its base URL, ``requests`` the JSON
    bodies and ``paths`` their paths. Built on the tests' one loopback server (``helpers.Loopback``)."""

    PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")

    def __init__(self, script: list[Any] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.script = list(script or [])
        self._lock = threading.Lock()
        self._server = Loopback({path: self._answer for path in self.PATHS}).start()
        self.url = self._server.url("")

    def _answer(self, request: Request) -> Reply:
        body = json.loads(request.body or b"{}")
        with self._lock:
            self.requests.append(body)
            self.paths.append(request.path)
            reply = self.script.pop(0) if self.script else "done"
            n = len(self.requests)
        if request.path.endswith("/chat/completions"):
            return self._chat(body, reply, n)
        payload = self._responses(reply, n) if request.path.endswith("/responses") else self._anthropic(reply, n)
        return self._json(payload)

    def close(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> "RecordingServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- replies --------------------------------------------------------------------------------
    @staticmethod
    def _json(payload: dict[str, Any]) -> Reply:
        return Reply(json.dumps(payload).encode(), headers={"Content-Type": "application/json"})

    @staticmethod
    def _chat_message(reply: Any, n: int) -> dict[str, Any]:
        if isinstance(reply, dict):
            return {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function",
                "function": {"name": reply["tool"], "arguments": json.dumps(reply["args"])}}]}
        return {"role": "assistant", "content": str(reply)}

    def _chat(self, body: dict[str, Any], reply: Any, n: int) -> Reply:
        message = self._chat_message(reply, n)
        finish = "tool_calls" if "tool_calls" in message else "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        model = body.get("model", "gpt-4o")
        if not body.get("stream"):
            return self._json({"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": model,
                               "usage": usage,
                               "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        delta: dict[str, Any] = {"role": "assistant"}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": 0, **message["tool_calls"][0]}]
        else:
            delta["content"] = message["content"]
        events = [{"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [choice]}
                  for choice in ({"index": 0, "delta": delta, "finish_reason": None},
                                 {"index": 0, "delta": {}, "finish_reason": finish})]
        stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return Reply(stream.encode(), headers={"Content-Type": "text/event-stream"})

    @staticmethod
    def _responses(reply: Any, n: int) -> dict[str, Any]:
        if isinstance(reply, dict):
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": reply["tool"],
                    "arguments": json.dumps(reply["args"]), "status": "completed"}
        else:
            item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": str(reply), "annotations": []}]}
        return {"id": f"resp_{n}", "object": "response", "created_at": 0, "model": "gpt-4o", "status": "completed",
                "output": [item], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}}

    @staticmethod
    def _anthropic(reply: Any, n: int) -> dict[str, Any]:
        if isinstance(reply, dict):
            content = [{"type": "tool_use", "id": f"toolu_{n}", "name": reply["tool"], "input": reply["args"]}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": str(reply)}]
            stop = "end_turn"
        return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 2}}
