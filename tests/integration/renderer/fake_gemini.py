"""A fake Gemini API server on loopback that speaks the REST protocol google-genai uses.

It answers `POST /{version}/models/{model}:generateContent` the way the real
service does: JSON plans as text parts, images as inlineData parts, 429
RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` detail, 500 INTERNAL,
safety-blocked candidates (a finish reason and no image) and slow answers.
Faults are scripted with `add_rule`; every request is recorded (model, text,
attached images, generation config, when it arrived and what was answered) so
tests can assert exactly what our code sent. The renderer is pointed at it
with GEMINI_BASE_URL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from PIL import Image, ImageDraw

Action = Literal["ok", "429", "500", "blocked", "prompt-blocked", "malformed"]

_PATH = re.compile(r"^/(?P<version>v1\w*)/models/(?P<model>[^/:]+):generateContent$")
# Pixel sizes per aspect ratio: small, so tests stay fast, but with the real proportions.
_SIZES = {
    "1:1": (256, 256),
    "16:9": (320, 180),
    "9:16": (180, 320),
    "4:3": (288, 216),
    "3:4": (216, 288),
    "3:2": (300, 200),
    "2:3": (200, 300),
    "21:9": (336, 144),
}


@dataclass
class Rule:
    """A scripted answer for requests whose text contains `match` (and whose model is `model`)."""

    action: Action
    match: str = ""
    model: str = ""
    times: int | None = 1  # None: every matching request
    retry_delay: float = 1.0  # 429: the RetryInfo delay
    delay: float = 0.0  # seconds to wait before answering
    finish_reason: str = "IMAGE_SAFETY"  # blocked: the candidate's finish reason
    used: int = 0

    def applies(self, request: RecordedRequest) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        return self.match in request.text and (not self.model or self.model == request.model)


@dataclass
class RecordedRequest:
    """One generateContent call as the fake received it."""

    model: str
    api_version: str
    api_key: str
    body: dict[str, Any]
    text: str
    images: list[bytes]
    received: float
    status: int = 0
    answer: Action = "ok"
    image_sent: bytes = b""

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.body.get("generationConfig", {})
        return config

    @property
    def wants_image(self) -> bool:
        return "IMAGE" in self.config.get("responseModalities", [])

    @property
    def image_digests(self) -> list[str]:
        """sha256 of the pixels of every attached image (PNG re-encoding does not change them)."""
        return [pixel_digest(data) for data in self.images]


def pixel_digest(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


class FakeGemini:
    """The server; use as a context manager (`with FakeGemini() as gemini: gemini.url`)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.rules: list[Rule] = []
        self.plan_override: Callable[[int], dict[str, Any]] | None = None
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = (
            False  # a slow answer nobody waits for any more must not hold up the test
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-gemini", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def add_rule(self, action: Action, match: str = "", **options: Any) -> Rule:
        rule = Rule(action, match, **options)
        with self._changed:
            self.rules.append(rule)
        return rule

    def image_requests(self, containing: str = "") -> list[RecordedRequest]:
        with self._changed:
            return [r for r in self.requests if r.wants_image and containing in r.text]

    def wait_for(self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 30) -> None:
        """Blocks until `predicate(requests)` holds (checked as each request arrives and is answered)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Gemini: condition not met after {len(self.requests)} requests")
                self._changed.wait(left)

    # ---- answering ----------------------------------------------------------

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any], float]:
        with self._changed:
            rule = next((r for r in self.rules if r.applies(request)), None)
            if rule is not None:
                rule.used += 1
            self.requests.append(request)
            self._changed.notify_all()  # a held answer's request is seen before it is answered
        action: Action = rule.action if rule else "ok"
        delay = rule.delay if rule else 0.0
        request.answer = action
        if action == "429":
            return (
                429,
                _error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Resource has been exhausted (e.g. check quota).",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": f"{rule.retry_delay if rule else 1}s",
                        }
                    ],
                ),
                delay,
            )
        if action == "500":
            return 500, _error(500, "INTERNAL", "An internal error has occurred.", []), delay
        if action == "blocked":
            reason = rule.finish_reason if rule else "IMAGE_SAFETY"
            return 200, {"candidates": [{"finishReason": reason, "index": 0}], **_usage(request)}, delay
        if action == "prompt-blocked":
            return 200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, **_usage(request)}, delay
        if action == "malformed":
            return 200, _text_answer(request, '{"title": "half a plan", "scenes": [ '), delay
        if request.wants_image:
            png = _picture(request, len(self.requests))
            request.image_sent = png
            part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}
            answer = {
                "candidates": [
                    {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
                ],
                **_usage(request),
            }
            return 200, answer, delay
        count = _panel_count(request.text)
        plan = self.plan_override(count) if self.plan_override else default_plan(count)
        return 200, _text_answer(request, json.dumps(plan, ensure_ascii=False)), delay

    def _record_status(self, request: RecordedRequest, status: int) -> None:
        with self._changed:
            request.status = status
            self._changed.notify_all()


def default_plan(count: int) -> dict[str, Any]:
    """A plan of `count` scenes; scene i's visual prompt contains "Picture i." (rules match on it)."""
    shots = ["establishing", "medium", "close-up", "wide", "over-the-shoulder", "extreme-close-up"]
    return {
        "title": "The Lantern Keeper",
        "language": "en",
        "characters": [
            {"name": "Mara", "description": "young keeper, short red hair, yellow raincoat"},
            {"name": "Tomas", "description": "old man, white beard, navy sweater"},
        ],
        "scenes": [
            {
                "setting": "a lighthouse in a storm",
                "characters": ["Mara", "Tomas"] if i % 2 else ["Mara"],
                "action": f"Mara does thing {i}",
                "shot": shots[(i - 1) % len(shots)],
                "dialogue": [{"speaker": "Mara", "text": f"Line {i}, said clearly."}],
                "narration": f"Narration {i}." if i == 1 else "",
                "visual_prompt": f"Picture {i}. Mara at the lamp.",
            }
            for i in range(1, count + 1)
        ],
    }


def _decode(data: str) -> bytes:
    """Base64 as the API accepts it: standard or URL-safe alphabet, padded or not."""
    return base64.urlsafe_b64decode(data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4))


def _panel_count(text: str) -> int:
    found = re.search(r"exactly (\d+) panels", text)
    return int(found.group(1)) if found else 1


def _picture(request: RecordedRequest, serial: int) -> bytes:
    ratio = request.config.get("imageConfig", {}).get("aspectRatio", "1:1")
    size = _SIZES.get(ratio, _SIZES["1:1"])
    shade = (serial * 53) % 200 + 30
    image = Image.new("RGB", size, (shade, 255 - shade, (shade * 3) % 256))
    ImageDraw.Draw(image).ellipse(
        (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), fill=(20, 20, 20)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _usage(request: RecordedRequest) -> dict[str, Any]:
    return {
        "usageMetadata": {
            "promptTokenCount": len(request.text) // 4,
            "totalTokenCount": len(request.text) // 4,
        },
        "modelVersion": request.model,
    }


def _text_answer(request: RecordedRequest, text: str) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
        ],
        **_usage(request),
    }


def _error(code: int, status: str, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


def _handler_for(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            matched = _PATH.match(path)
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            if matched is None:
                self._send(404, _error(404, "NOT_FOUND", f"no method {path}", []))
                return
            body = json.loads(raw or b"{}")
            texts: list[str] = []
            images: list[bytes] = []
            for content in body.get("contents", []):
                for part in content.get("parts", []):
                    if "text" in part:
                        texts.append(part["text"])
                    if "inlineData" in part:
                        images.append(_decode(part["inlineData"]["data"]))
            request = RecordedRequest(
                model=matched.group("model"),
                api_version=matched.group("version"),
                api_key=self.headers.get("x-goog-api-key", ""),
                body=body,
                text="\n".join(texts),
                images=images,
                received=time.monotonic(),
            )
            status, answer, delay = fake._answer(request)
            if delay:
                time.sleep(delay)
            fake._record_status(request, status)
            self._send(status, answer)

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=UTF-8")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its deadline passed): nothing to answer

    return Handler
