"""A loopback HTTP server that records what provider clients send and answers like the provider.

It speaks just enough of OpenAI chat completions (plain and streamed), the OpenAI Responses API
and Anthropic messages for the real client packages to parse its replies. Replies are scripted:
each request takes the next one (``{"tool": name, "args": {...}}`` for a tool call, or a text);
when the script runs out it answers ``"done"``. Only 127.0.0.1; the server thread is a daemon
and ``close()`` stops it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordingServer:
    """Start with ``RecordingServer(script)``; ``url`` is its base URL, ``requests`` the JSON bodies."""

    def __init__(self, script: list[Any] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.script = list(script or [])
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.paths.append(self.path)
                    reply = server.script.pop(0) if server.script else "done"
                    n = len(server.requests)
                if self.path.endswith("/chat/completions"):
                    server._chat(self, body, reply, n)
                elif self.path.endswith("/responses"):
                    server._json(self, server._responses(reply, n))
                elif self.path.endswith("/messages"):
                    server._json(self, server._anthropic(reply, n))
                else:
                    self.send_error(404)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "RecordingServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- replies --------------------------------------------------------------------------------
    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _chat_message(reply: Any, n: int) -> dict[str, Any]:
        if isinstance(reply, dict):
            return {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function",
                "function": {"name": reply["tool"], "arguments": json.dumps(reply["args"])}}]}
        return {"role": "assistant", "content": str(reply)}

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], reply: Any, n: int) -> None:
        message = self._chat_message(reply, n)
        finish = "tool_calls" if "tool_calls" in message else "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        if not body.get("stream"):
            self._json(handler, {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0,
                                 "model": body.get("model", "gpt-4o"), "usage": usage,
                                 "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
            return
        delta: dict[str, Any] = {"role": "assistant"}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": 0, **message["tool_calls"][0]}]
        else:
            delta["content"] = message["content"]
        chunks = [
            {"index": 0, "delta": delta, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": finish},
        ]
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.end_headers()
        for choice in chunks:
            event = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0,
                     "model": body.get("model", "gpt-4o"), "choices": [choice]}
            handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()

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
