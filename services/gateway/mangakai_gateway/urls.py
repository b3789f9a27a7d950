"""Signed image URLs: fills `Image.uri` in outgoing messages from the storage service.

Each image also gets the keys and signed URLs of its WebP copy and thumbnail,
which the storage service stores beside every panel image it receives.
URLs are cached until shortly before they expire, so a stream of events to
many watchers signs each image once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_runtime.blobs import BlobClient, thumbnail_key, webp_key

_CACHE_LIMIT = 50_000


class UrlSigner:
    """Puts a signed, expiring download URL into every image reference of a message."""

    def __init__(self, blobs: BlobClient, ttl_seconds: int) -> None:
        self._blobs = blobs
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        # Keys being signed right now: concurrent watchers of one event wait for one call.
        self._signing: dict[str, asyncio.Task[None]] = {}

    async def sign_keys(self, keys: Iterable[str]) -> dict[str, tuple[str, float]]:
        now = time.time()
        margin = self._ttl / 4
        wanted = {k for k in keys if k}
        stale = [k for k in wanted if k not in self._cache or self._cache[k][1] - now < margin]
        calls = {self._signing[k] for k in stale if k in self._signing}
        missing = [k for k in stale if k not in self._signing]
        if missing:
            # The call runs as a task of its own, not inside the watcher that asked first: a
            # watcher that goes away (its client disconnected) must not cancel the call under
            # the others, nor hand them its cancellation.
            call = asyncio.create_task(self._sign(missing))
            call.add_done_callback(_retrieve)
            for key in missing:
                self._signing[key] = call
            calls.add(call)
        for call in calls:
            await asyncio.shield(call)
        return {k: self._cache[k] for k in wanted}

    async def _sign(self, keys: list[str]) -> None:
        try:
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            for start in range(0, len(keys), 500):
                for signed in await self._blobs.sign(keys[start : start + 500], self._ttl):
                    self._cache[signed.key] = (signed.uri, signed.expire_time.seconds)
        finally:
            for key in keys:
                self._signing.pop(key, None)

    async def fill_images(self, images: list[common_pb2.Image]) -> None:
        for image in images:
            if image.blob_key and not image.webp_blob_key:
                image.webp_blob_key = webp_key(image.blob_key) or ""
            if image.blob_key and not image.thumbnail_blob_key:
                image.thumbnail_blob_key = thumbnail_key(image.blob_key) or ""
        signed = await self.sign_keys(
            key for i in images for key in (i.blob_key, i.webp_blob_key, i.thumbnail_blob_key)
        )
        for image in images:
            if image.blob_key in signed:
                image.uri = signed[image.blob_key][0]
            if image.webp_blob_key in signed:
                image.webp_uri = signed[image.webp_blob_key][0]
            if image.thumbnail_blob_key in signed:
                image.thumbnail_uri = signed[image.thumbnail_blob_key][0]

    async def fill_job(self, job: common_pb2.Job) -> common_pb2.Job:
        await self.fill_images(_job_images(job))
        return job

    async def fill_jobs(self, response: jobs_pb2.ListJobsResponse) -> jobs_pb2.ListJobsResponse:
        await self.fill_images([image for job in response.jobs for image in _job_images(job)])
        return response

    async def fill_panel(self, panel: common_pb2.Panel) -> common_pb2.Panel:
        await self.fill_images(_panel_images(panel))
        return panel

    async def fill_event(self, event: common_pb2.JobEvent) -> common_pb2.JobEvent:
        kind = event.WhichOneof("kind")
        if kind == "panel_finished":
            await self.fill_images(_version_images(event.panel_finished.version))
        elif kind == "character_sheet_ready":
            await self.fill_images([event.character_sheet_ready])
        return event


def _version_images(version: common_pb2.PanelVersion) -> list[common_pb2.Image]:
    """The lettered panel and the un-lettered art of a version, when drawn."""
    return [
        image for field in ("image", "art") if version.HasField(field) for image in [getattr(version, field)]
    ]


def _panel_images(panel: common_pb2.Panel) -> list[common_pb2.Image]:
    return [image for version in panel.versions for image in _version_images(version)]


def _job_images(job: common_pb2.Job) -> list[common_pb2.Image]:
    images = [image for panel in job.panels for image in _panel_images(panel)]
    if job.HasField("character_sheet"):
        images.append(job.character_sheet)
    return images


def _retrieve(call: asyncio.Task[None]) -> None:
    """Marks a signing call's failure as seen: the watchers that awaited it re-raise it."""
    if not call.cancelled():
        call.exception()
