"""The Gemini backend (google-genai): structured scene plans and panel art.

Planning asks the text model for JSON that follows a response schema and
validates it (malformed output is retried, then fails with a clear reason).
Panels ask the image model for art without text; the lettering is ours (see
`lettering`), so CJK dialogue is always crisp and correct. Every call has a
deadline; 429 RESOURCE_EXHAUSTED and 5xx answers become retryable errors that
carry the server's retry delay, a response without an image becomes a failed
panel with its finish reason.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image
from pydantic import BaseModel, Field, ValidationError

from mangakai.v1 import common_pb2
from mangakai_renderer.backend import BackendError, PanelSpec
from mangakai_renderer.metrics import GEMINI_CALLS
from mangakai_renderer.settings import RendererSettings

log = logging.getLogger(__name__)

PLAN_ATTEMPTS = 3
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
    details = (
        (error.details or {}).get("error", {}).get("details", []) if isinstance(error.details, dict) else []
    )
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"([\d.]+)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _to_backend_error(error: genai_errors.APIError, kind: str) -> BackendError:
    if error.code == 429:
        GEMINI_CALLS.labels(kind, "429").inc()
        return BackendError(
            "RESOURCE_EXHAUSTED",
            f"Gemini quota exhausted: {error.message}",
            retryable=True,
            retry_after=_retry_delay(error),
        )
    GEMINI_CALLS.labels(kind, "error").inc()
    if error.code >= 500:
        return BackendError(
            "GEMINI_UNAVAILABLE", f"Gemini error {error.code}: {error.message}", retryable=True
        )
    return BackendError("GEMINI_REJECTED", f"Gemini refused the request ({error.code}): {error.message}")


class GeminiBackend:
    """Plans and draws with Gemini."""

    name = "gemini"

    def __init__(self, settings: RendererSettings) -> None:
        options = types.HttpOptions(timeout=int(settings.gemini_timeout_seconds * 1000))
        if settings.gemini_base_url:
            options.base_url = settings.gemini_base_url
        self._client = genai.Client(api_key=settings.gemini_api_key, http_options=options)
        self._plan_model = settings.gemini_plan_model
        self._image_model = settings.gemini_image_model

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan:
        prompt = (
            f"Plan this story as a manga of exactly {panel_count} panels, one scene per panel, in reading order. "
            "Keep dialogue verbatim in the story's own language. Give every character a fixed visual description "
            f"so they can be drawn the same way in every panel. Style: {_style_words(style)}.\n\nSTORY:\n{story}"
        )
        config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=_Plan)
        problem = ""
        for _attempt in range(PLAN_ATTEMPTS):
            try:
                response = await self._client.aio.models.generate_content(
                    model=self._plan_model, contents=prompt, config=config
                )
            except genai_errors.APIError as exc:
                raise _to_backend_error(exc, "plan") from exc
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

    async def draw(self, spec: PanelSpec, references: Sequence[bytes]) -> Image.Image:
        scene = spec.scene
        cast = {c.name: c.description for c in spec.characters}
        people = "; ".join(f"{n}: {cast.get(n, '')}" for n in scene.characters)
        prompt = (
            f"A single manga panel, {common_pb2.ShotType.Name(scene.shot)[10:].lower().replace('_', ' ')} shot. "
            f"{scene.visual_prompt} Setting: {scene.setting}. Action: {scene.action}. Characters: {people}. "
            f"Style: {_style_words(spec.style)}. Draw no text, no speech bubbles and no captions."
        )
        if spec.instruction:
            prompt += f" Change from the previous version: {spec.instruction}"
        parts: list[Any] = [prompt]
        parts.extend(types.Part.from_bytes(data=data, mime_type=_mime(data)) for data in references)
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="1:1")
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=self._image_model, contents=parts, config=config
            )
        except genai_errors.APIError as exc:
            raise _to_backend_error(exc, "image") from exc
        for candidate in response.candidates or []:
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.inline_data is not None and part.inline_data.data:
                    GEMINI_CALLS.labels("image", "ok").inc()
                    image = Image.open(io.BytesIO(part.inline_data.data))
                    image.load()
                    return image.convert("RGB")
        reason = "NO_IMAGE"
        if response.candidates and response.candidates[0].finish_reason:
            reason = str(response.candidates[0].finish_reason.value)
        elif response.prompt_feedback and response.prompt_feedback.block_reason:
            reason = str(response.prompt_feedback.block_reason.value)
        GEMINI_CALLS.labels(
            "image", "safety" if "SAFETY" in reason or "PROHIBITED" in reason else "error"
        ).inc()
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
