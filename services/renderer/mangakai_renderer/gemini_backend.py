"""The Gemini backend (google-genai): structured scene plans, character sheets and panel art.

Planning asks the text model for JSON that follows a response schema and
validates it (malformed output is retried, then fails with a clear reason).
Before the panels, one character sheet per job is drawn from the character
bible; every panel request carries it as the first reference image (then the
user's references and, when regenerating, the panel's previous version).
Panels ask the image model for art without text; the lettering is ours (see
`local_art.letter_art`), so CJK dialogue is always crisp and correct and the
art can be lettered again without drawing it again.

Every call takes from the project's shared per-minute budget (`quota`) and
has a deadline; a quota store still out of reach at the deadline is a
retryable error. 429 RESOURCE_EXHAUSTED is retried after the server's
RetryInfo delay plus jitter (or surfaced with that delay when it is too long
to wait), 5xx and timeouts a bounded number of times with jittered backoff.
A response without an image is a failed panel carrying the finish reason;
safety blocks are optionally tried once more with a softened prompt.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image
from pydantic import BaseModel, Field, ValidationError

from mangakai.v1 import common_pb2
from mangakai_renderer import local_art
from mangakai_renderer.backend import REQUEST_DEADLINE, Artwork, BackendError, PanelSpec, References
from mangakai_renderer.metrics import GEMINI_CALLS, GEMINI_RETRIES
from mangakai_renderer.quota import GeminiQuota, QuotaExhausted, QuotaStoreUnavailable
from mangakai_renderer.settings import RendererSettings

log = logging.getLogger(__name__)

PLAN_ATTEMPTS = 3
# Finish and block reasons that mean "the picture was refused", worth one softened try.
_REFUSALS = frozenset(
    {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST", "IMAGE_OTHER"}
)
_SOFTEN = (
    "Keep the picture gentle and suitable for all ages: no blood, injuries, weapons or nudity; "
    "show tension through expressions and composition instead. "
)
_SHOTS = {
    "establishing": common_pb2.SHOT_TYPE_ESTABLISHING,
    "wide": common_pb2.SHOT_TYPE_WIDE,
    "medium": common_pb2.SHOT_TYPE_MEDIUM,
    "close-up": common_pb2.SHOT_TYPE_CLOSE_UP,
    "extreme-close-up": common_pb2.SHOT_TYPE_EXTREME_CLOSE_UP,
    "over-the-shoulder": common_pb2.SHOT_TYPE_OVER_THE_SHOULDER,
}


class _Line(BaseModel):
    speaker: str = Field(description="Name of the speaking character, from the character list")
    text: str = Field(description="The spoken words, verbatim from the story, in its language")


class _Character(BaseModel):
    name: str
    description: str = Field(description="Fixed visual description: hair, eyes, clothes, build, colours")


class _Scene(BaseModel):
    setting: str
    characters: list[str]
    action: str
    shot: str = Field(description="One of: " + ", ".join(_SHOTS))
    dialogue: list[_Line]
    narration: str = Field(description="Narration caption in the story's language, or empty")
    visual_prompt: str = Field(description="One English sentence describing the picture, no text in it")


class _Plan(BaseModel):
    title: str
    language: str = Field(description="BCP-47 tag of the story's language, e.g. en, ja, zh")
    characters: list[_Character]
    scenes: list[_Scene]


def _style_words(style: common_pb2.StylePreferences) -> str:
    parts = []
    for field, enum in (
        ("art_style", common_pb2.ArtStyle),
        ("mood", common_pb2.Mood),
        ("color_palette", common_pb2.ColorPalette),
        ("character_style", common_pb2.CharacterStyle),
        ("line_style", common_pb2.LineStyle),
        ("composition", common_pb2.Composition),
    ):
        value = getattr(style, field)
        if value:
            name = enum.Name(value).split("_", 2)[-1] if field != "color_palette" else enum.Name(value)[14:]
            parts.append(f"{field.replace('_', ' ')}: {name.lower().replace('_', ' ')}")
    if style.notes:
        parts.append(f"notes: {style.notes}")
    return "; ".join(parts) or "classic black-and-white manga"


def _retry_delay(error: genai_errors.APIError) -> float | None:
    """The RetryInfo delay of a 429 answer, in seconds, when the server sent one."""
    details = error.details.get("error", {}).get("details", []) if isinstance(error.details, dict) else []
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"([\d.]+)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _backoff(attempt: int) -> float:
    """Jittered exponential backoff for 5xx answers and timeouts: about 0.5s, 1s, 2s, ... up to 8s."""
    return float(min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))


def _remaining() -> float:
    """Seconds left before the current RPC's deadline (a day when it has none)."""
    deadline = REQUEST_DEADLINE.get()
    return 86_400.0 if deadline is None else deadline - time.monotonic()


def _final_error(error: genai_errors.APIError, kind: str, retry_after: float | None) -> BackendError:
    if error.code == 429:
        return BackendError(
            "RESOURCE_EXHAUSTED",
            f"Gemini quota exhausted: {error.message}",
            retryable=True,
            retry_after=retry_after if retry_after is not None else _backoff(0),
        )
    if error.code >= 500:
        return BackendError(
            "GEMINI_UNAVAILABLE", f"Gemini error {error.code}: {error.message}", retryable=True
        )
    return BackendError("GEMINI_REJECTED", f"Gemini refused the request ({error.code}): {error.message}")


class GeminiBackend:
    """Plans and draws with Gemini."""

    name = "gemini"
    model_backed = True

    def __init__(self, settings: RendererSettings, quota: GeminiQuota) -> None:
        options = types.HttpOptions(
            timeout=int(settings.gemini_timeout_seconds * 1000),
            # Retries are ours (they honour RetryInfo and the caller's deadline): the SDK makes one attempt.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        if settings.gemini_base_url:
            options.base_url = settings.gemini_base_url
        self._client = genai.Client(api_key=settings.gemini_api_key, http_options=options)
        self._settings = settings
        self._quota = quota
        self._plan_model = settings.gemini_plan_model
        self._image_model = settings.gemini_image_model

    async def _generate(
        self, kind: str, model: str, contents: Any, config: types.GenerateContentConfig, *, images: int
    ) -> types.GenerateContentResponse:
        """One generateContent call with quota, deadline and bounded retries."""
        settings = self._settings
        for attempt in range(settings.gemini_attempts):
            last = attempt + 1 == settings.gemini_attempts
            try:
                await self._quota.acquire(
                    requests=1,
                    images=images,
                    max_wait=min(settings.gemini_quota_wait_seconds, max(0.0, _remaining() - 1)),
                    max_store_wait=max(0.0, _remaining() - 1),
                )
            except QuotaExhausted as exc:
                GEMINI_CALLS.labels(kind, "quota").inc()
                raise BackendError(
                    "RESOURCE_EXHAUSTED", str(exc), retryable=True, retry_after=exc.retry_after
                ) from exc
            except QuotaStoreUnavailable as exc:
                GEMINI_CALLS.labels(kind, "quota-store").inc()
                raise BackendError("QUOTA_STORE_UNAVAILABLE", str(exc), retryable=True) from exc
            timeout = min(settings.gemini_timeout_seconds, _remaining())
            try:
                async with asyncio.timeout(timeout):
                    return await self._client.aio.models.generate_content(
                        model=model, contents=contents, config=config
                    )
            except genai_errors.APIError as exc:
                GEMINI_CALLS.labels(kind, "429" if exc.code == 429 else "error").inc()
                if exc.code == 429:
                    server_delay = _retry_delay(exc)
                    # The server's delay, stretched by up to a fifth so replicas do not come back together.
                    delay = (
                        server_delay if server_delay is not None else _backoff(attempt)
                    ) * random.uniform(1.0, 1.2)
                    if last or delay > settings.gemini_max_retry_wait_seconds or delay >= _remaining() - 1:
                        raise _final_error(exc, kind, delay) from exc
                    GEMINI_RETRIES.labels("429").inc()
                    log.info("Gemini %s call got 429; retrying in %.2fs", kind, delay)
                    await asyncio.sleep(delay)
                    continue
                if exc.code >= 500 and not last:
                    delay = _backoff(attempt)
                    if delay < _remaining() - 1:
                        GEMINI_RETRIES.labels("5xx").inc()
                        log.info("Gemini %s call got %d; retrying in %.2fs", kind, exc.code, delay)
                        await asyncio.sleep(delay)
                        continue
                raise _final_error(exc, kind, None) from exc
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                # Our deadline, or the connection failed (the SDK's async transport is aiohttp).
                GEMINI_CALLS.labels(kind, "timeout").inc()
                if last or _remaining() < 2:
                    raise BackendError(
                        "GEMINI_TIMEOUT",
                        f"Gemini did not answer in time ({type(exc).__name__})",
                        retryable=True,
                    ) from exc
                GEMINI_RETRIES.labels("timeout").inc()
                await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan:
        prompt = (
            f"Plan this story as a manga of exactly {panel_count} panels, one scene per panel, in reading order. "
            "Keep dialogue verbatim in the story's own language. Give every character a fixed visual description "
            "(hair, eyes, clothes, build, colours) so they can be drawn the same way in every panel. "
            f"Style: {_style_words(style)}.\n\nSTORY:\n{story}"
        )
        config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=_Plan)
        problem = ""
        for _attempt in range(PLAN_ATTEMPTS):
            response = await self._generate("plan", self._plan_model, prompt, config, images=0)
            try:
                plan = _Plan.model_validate(json.loads(response.text or ""))
            except (ValueError, ValidationError) as exc:
                problem = f"malformed plan: {exc}"[:300]
                GEMINI_CALLS.labels("plan", "malformed").inc()
                continue
            if len(plan.scenes) != panel_count:
                problem = f"the plan has {len(plan.scenes)} scenes instead of {panel_count}"
                GEMINI_CALLS.labels("plan", "malformed").inc()
                continue
            GEMINI_CALLS.labels("plan", "ok").inc()
            return _to_proto(plan)
        raise BackendError(
            "PLAN_MALFORMED", f"Gemini gave no usable plan after {PLAN_ATTEMPTS} tries: {problem}"
        )

    async def draw_character_sheet(
        self,
        characters: Sequence[common_pb2.Character],
        style: common_pb2.StylePreferences,
        language: str,
        references: Sequence[bytes],
    ) -> Image.Image:
        cast = "; ".join(f"{i}. {c.name}: {c.description}" for i, c in enumerate(characters, start=1))
        prompt = (
            "A character model sheet for a manga: every character below standing side by side, left to right "
            "in this order, full body, front view, neutral pose, same scale, on a plain light background. "
            f"Characters: {cast}. Style: {_style_words(style)}. "
            "Draw no text, no names and no labels."
        )
        if references:
            prompt += " Follow the attached reference images for the characters' look."
        return await self._image("sheet", prompt, references, "3:2")

    async def draw(self, spec: PanelSpec, references: References) -> Artwork:
        scene = spec.scene
        cast = {c.name: c.description for c in spec.characters}
        people = "; ".join(f"{n}: {cast.get(n, '')}" for n in scene.characters)
        speakers = list(dict.fromkeys(line.speaker for line in scene.dialogue if line.speaker in cast))
        images: list[bytes] = []
        guide: list[str] = []
        if references.character_sheet:
            images.append(references.character_sheet)
            guide.append(
                f"Image {len(images)} is the character sheet: draw every character exactly as on it "
                "(face, hair, clothes, colours)."
            )
        for data in references.user:
            images.append(data)
            guide.append(f"Image {len(images)} is a reference from the user: follow it.")
        if references.previous_version:
            images.append(references.previous_version)
            guide.append(
                f"Image {len(images)} is the previous version of this panel: keep what the change does not touch."
            )
        shot = common_pb2.ShotType.Name(scene.shot)[10:].lower().replace("_", " ")
        # Our balloons go at the top, above their speakers in reading order: ask for the room and the order.
        room = ""
        if speakers:
            direction = "right to left" if spec.language.startswith("ja") else "left to right"
            room = f"Leave the top quarter free for speech balloons; speakers from {direction}: {', '.join(speakers)}. "
        prompt = (
            f"A single manga panel, {shot} shot. {scene.visual_prompt} Setting: {scene.setting}. "
            f"Action: {scene.action}. Characters: {people}. {room}Style: {_style_words(spec.style)}. "
            "Draw no text, no speech bubbles, no captions and no sound effects."
        )
        if spec.instruction:
            prompt += f" Change from the previous version: {spec.instruction}"
        if guide:
            prompt += " " + " ".join(guide)
        ratio = spec.aspect_ratio or "1:1"
        try:
            art = await self._image("image", prompt, images, ratio)
        except BackendError as exc:
            if exc.reason not in _REFUSALS or not self._settings.gemini_soften_blocked:
                raise
            log.info("panel %d refused (%s); trying once with a softened prompt", scene.number, exc.reason)
            GEMINI_RETRIES.labels("softened").inc()
            try:
                art = await self._image("image", _SOFTEN + prompt, images, ratio)
            except BackendError as again:
                if again.reason in _REFUSALS:
                    raise BackendError(
                        again.reason,
                        f"Gemini returned no image (finish reason {again.reason}), "
                        "also with a softened prompt",
                    ) from again
                raise
        lettered = await asyncio.to_thread(
            local_art.letter_art, art, scene, list(spec.characters), spec.style, language=spec.language
        )
        return Artwork(art, lettered)

    async def _image(self, kind: str, prompt: str, images: Sequence[bytes], ratio: str) -> Image.Image:
        parts: list[Any] = [prompt]
        parts.extend(types.Part.from_bytes(data=data, mime_type=_mime(data)) for data in images)
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio=ratio)
        )
        response = await self._generate(kind, self._image_model, parts, config, images=1)
        for candidate in response.candidates or []:
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.inline_data is not None and part.inline_data.data:
                    GEMINI_CALLS.labels(kind, "ok").inc()
                    image = Image.open(io.BytesIO(part.inline_data.data))
                    image.load()
                    return image.convert("RGB")
        reason = "NO_IMAGE"
        if response.candidates and response.candidates[0].finish_reason:
            finish = response.candidates[0].finish_reason
            reason = str(finish.value if hasattr(finish, "value") else finish)
            if reason == "STOP":
                reason = "NO_IMAGE"
        elif response.prompt_feedback and response.prompt_feedback.block_reason:
            block = response.prompt_feedback.block_reason
            reason = str(block.value if hasattr(block, "value") else block)
        GEMINI_CALLS.labels(kind, "refused" if reason in _REFUSALS else "no-image").inc()
        raise BackendError(reason, f"Gemini returned no image (finish reason {reason})")


def _mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return "image/webp"


def _to_proto(plan: _Plan) -> common_pb2.ScenePlan:
    result = common_pb2.ScenePlan(title=plan.title, language=plan.language)
    for character in plan.characters:
        result.characters.add(name=character.name, description=character.description)
    for number, scene in enumerate(plan.scenes, start=1):
        result.scenes.add(
            number=number,
            setting=scene.setting,
            characters=scene.characters,
            action=scene.action,
            shot=_SHOTS.get(scene.shot.lower(), common_pb2.SHOT_TYPE_MEDIUM),
            dialogue=[common_pb2.DialogueLine(speaker=d.speaker, text=d.text) for d in scene.dialogue],
            narration=scene.narration,
            visual_prompt=scene.visual_prompt,
        )
    return result
