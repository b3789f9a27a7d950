"""Validation of public requests: every violation names its field (google.rpc.BadRequest).

Limits stated in proto/mangakai/v1/jobs.proto are enforced here, before any
work is done or anything is written.
"""

from __future__ import annotations

import io
import re
import unicodedata
import uuid
import warnings
from typing import Protocol

from google.protobuf.descriptor import EnumDescriptor
from PIL import Image, UnidentifiedImageError

from mangakai.v1 import common_pb2, jobs_pb2, sessions_pb2
from mangakai_runtime.errors import FieldViolation, InvalidArgument

MAX_STORY_CHARS = 20_000
MAX_PANELS = 24
MAX_NOTES_CHARS = 1000
MAX_INSTRUCTION_CHARS = 1000
MAX_REFERENCE_BYTES = 8 * 1024 * 1024
# Decoding allocates width x height pixels whatever the file's size: a few hundred bytes of PNG can
# declare a picture of gigabytes (a decompression bomb). 40 million pixels is more than any model
# takes as a reference.
MAX_REFERENCE_PIXELS = 40_000_000
MAX_PAGE_SIZE = 100
MAX_CLIENT_CHARS = 100
REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _ProtoEnum(Protocol):
    """A generated protobuf enum (its stubs type it as a class, not an EnumTypeWrapper)."""

    DESCRIPTOR: EnumDescriptor


_STYLE_ENUMS: dict[str, _ProtoEnum] = {
    "art_style": common_pb2.ArtStyle,
    "mood": common_pb2.Mood,
    "color_palette": common_pb2.ColorPalette,
    "character_style": common_pb2.CharacterStyle,
    "line_style": common_pb2.LineStyle,
    "composition": common_pb2.Composition,
}


def _check_enum(violations: list[FieldViolation], field: str, enum: _ProtoEnum, value: int) -> None:
    if value not in enum.DESCRIPTOR.values_by_number:
        violations.append(FieldViolation(field, f"unknown value {value} for {enum.DESCRIPTOR.full_name}"))


def _text_problem(value: str) -> str:
    """Why a text field cannot be stored, or "": PostgreSQL's text holds no NUL, UTF-8 no lone surrogate."""
    if "\x00" in value:
        return "must not contain U+0000 (NUL)"
    if any(unicodedata.category(c) == "Cs" for c in value):
        return "must be valid Unicode (no lone surrogates)"
    return ""


def _has_visible_text(value: str) -> bool:
    """Whether `value` has a letter, digit, mark, punctuation or symbol (not only spaces, controls,
    zero-width or other format characters such as U+200B or U+FEFF)."""
    return any(unicodedata.category(c)[0] not in "ZC" for c in value)


def _check_text(
    violations: list[FieldViolation], field: str, value: str, max_chars: int, *, required: bool = False
) -> None:
    problem = _text_problem(value)
    if problem:
        violations.append(FieldViolation(field, problem))
    elif required and not _has_visible_text(value):
        violations.append(
            FieldViolation(field, "is required and must not be only white space or invisible characters")
        )
    elif len(value) > max_chars:
        violations.append(
            FieldViolation(field, f"is {len(value)} characters; at most {max_chars} are allowed")
        )


def _raise(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


def job_id(name: str, field: str = "name") -> uuid.UUID:
    """The job id of a "jobs/{uuid}" name."""
    prefix, _, raw = name.partition("/")
    try:
        if prefix != "jobs" or len(raw) != 36:
            raise ValueError(name)
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument([FieldViolation(field, 'must be "jobs/{job_id}" with a UUID job id')]) from None


def create_session(request: sessions_pb2.CreateSessionRequest) -> None:
    violations: list[FieldViolation] = []
    _check_text(violations, "client", request.client, MAX_CLIENT_CHARS)
    _raise(violations)


def create_job(request: jobs_pb2.CreateJobRequest) -> None:
    violations: list[FieldViolation] = []
    _check_text(violations, "story", request.story, MAX_STORY_CHARS, required=True)
    if request.panel_count != 0 and not 1 <= request.panel_count <= MAX_PANELS:
        violations.append(
            FieldViolation("panel_count", f"must be 1 to {MAX_PANELS} (or 0 for the default of 6)")
        )
    for field, enum in _STYLE_ENUMS.items():
        _check_enum(violations, f"style.{field}", enum, getattr(request.style, field))
    _check_text(violations, "style.notes", request.style.notes, MAX_NOTES_CHARS)
    _check_enum(violations, "layout", common_pb2.PageLayout, request.layout)
    _check_enum(violations, "reading_order", common_pb2.ReadingOrder, request.reading_order)
    if request.request_id and not _REQUEST_ID.fullmatch(request.request_id):
        violations.append(FieldViolation("request_id", "1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"))
    _raise(violations)


def list_jobs(request: jobs_pb2.ListJobsRequest) -> None:
    violations: list[FieldViolation] = []
    if not 0 <= request.page_size <= MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}"))
    if len(request.page_token) > 512 or not request.page_token.isascii():
        violations.append(FieldViolation("page_token", "not a token returned by ListJobs"))
    _raise(violations)


def watch_job(request: jobs_pb2.WatchJobRequest) -> uuid.UUID:
    ident = job_id(request.name)
    if request.after_sequence < 0:
        _raise([FieldViolation("after_sequence", "must not be negative")])
    return ident


def regenerate_panel(request: jobs_pb2.RegeneratePanelRequest) -> uuid.UUID:
    violations: list[FieldViolation] = []
    ident: uuid.UUID | None = None
    try:
        ident = job_id(request.name)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    # Only the lower bound: the orchestrator knows the job and names its own range of panels.
    if request.panel < 1:
        violations.append(FieldViolation("panel", "must be 1 or more"))
    _check_text(violations, "instruction", request.instruction, MAX_INSTRUCTION_CHARS, required=True)
    if request.reference_image:
        problem = reference_image_problem(request.reference_image)
        if problem:
            violations.append(FieldViolation("reference_image", problem))
    _raise(violations)
    assert ident is not None
    return ident


def set_current_panel_version(request: jobs_pb2.SetCurrentPanelVersionRequest) -> uuid.UUID:
    violations: list[FieldViolation] = []
    ident: uuid.UUID | None = None
    try:
        ident = job_id(request.name)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    # Only the lower bound: the orchestrator knows the job and names its own range of panels.
    if request.panel < 1:
        violations.append(FieldViolation("panel", "must be 1 or more"))
    if request.version < 1:
        violations.append(FieldViolation("version", "must be 1 or more"))
    _raise(violations)
    assert ident is not None
    return ident


def reference_image_problem(data: bytes) -> str:
    """Why the bytes are not an acceptable reference image, or "" when they are."""
    if len(data) > MAX_REFERENCE_BYTES:
        return f"is {len(data)} bytes; at most {MAX_REFERENCE_BYTES} (8 MiB) are allowed"
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; our own limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=REFERENCE_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_REFERENCE_PIXELS:
                    return (
                        f"is {width} x {height} pixels; at most {MAX_REFERENCE_PIXELS:,} pixels are allowed"
                    )
                image.verify()
    except Image.DecompressionBombError:
        return f"declares more than {MAX_REFERENCE_PIXELS:,} pixels (a decompression bomb)"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "must be a PNG, JPEG or WebP image"
    return ""


def export_job(request: jobs_pb2.ExportJobRequest) -> uuid.UUID:
    violations: list[FieldViolation] = []
    ident: uuid.UUID | None = None
    try:
        ident = job_id(request.name)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if request.format not in (common_pb2.EXPORT_FORMAT_PDF, common_pb2.EXPORT_FORMAT_CBZ):
        violations.append(FieldViolation("format", "must be EXPORT_FORMAT_PDF or EXPORT_FORMAT_CBZ"))
    _raise(violations)
    assert ident is not None
    return ident
