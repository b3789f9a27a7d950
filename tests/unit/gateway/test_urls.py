"""Single-flight URL signing: many watchers of one event share one storage call."""

from __future__ import annotations

import asyncio

from mangakai.v1 import storage_pb2
from mangakai_gateway.urls import UrlSigner


class _SlowStorage:
    """Answers SignUrls after `release` is set, counting calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def sign(self, keys: list[str], ttl_seconds: int = 0) -> list[storage_pb2.SignedUrl]:
        self.calls += 1
        await self.release.wait()
        urls = [storage_pb2.SignedUrl(key=key, uri=f"https://blobs/{key}?sig=1") for key in keys]
        for url in urls:
            url.expire_time.seconds = 2_000_000_000
        return urls


async def test_a_waiter_that_goes_away_does_not_break_the_shared_signing_call() -> None:
    storage = _SlowStorage()
    signer = UrlSigner(storage, ttl_seconds=3600)  # type: ignore[arg-type]
    owner = asyncio.create_task(signer.sign_keys(["jobs/a/p.png"]))
    await asyncio.sleep(0)  # the owner's call is in flight
    waiter = asyncio.create_task(signer.sign_keys(["jobs/a/p.png"]))
    other = asyncio.create_task(signer.sign_keys(["jobs/a/p.png"]))
    await asyncio.sleep(0)
    waiter.cancel()  # a watcher disconnects while waiting for the shared call
    await asyncio.sleep(0)
    storage.release.set()

    assert (await owner)["jobs/a/p.png"][0] == "https://blobs/jobs/a/p.png?sig=1"
    assert (await other)["jobs/a/p.png"][0] == "https://blobs/jobs/a/p.png?sig=1"
    assert waiter.cancelled()
    assert storage.calls == 1


async def test_the_first_watcher_going_away_does_not_cancel_the_others() -> None:
    storage = _SlowStorage()
    signer = UrlSigner(storage, ttl_seconds=3600)  # type: ignore[arg-type]
    first = asyncio.create_task(signer.sign_keys(["jobs/a/p.png"]))
    await asyncio.sleep(0)  # the first watcher's request started the call
    second = asyncio.create_task(signer.sign_keys(["jobs/a/p.png"]))
    await asyncio.sleep(0)
    first.cancel()  # e.g. a client that stops watching after the first finished panel
    await asyncio.sleep(0)
    storage.release.set()

    assert (await asyncio.wait_for(second, 5))["jobs/a/p.png"][0] == "https://blobs/jobs/a/p.png?sig=1"
    assert first.cancelled()
    assert storage.calls == 1


async def test_a_failed_signing_call_fails_every_watcher_waiting_on_it() -> None:
    class _BrokenStorage(_SlowStorage):
        async def sign(self, keys: list[str], ttl_seconds: int = 0) -> list[storage_pb2.SignedUrl]:
            self.calls += 1
            await self.release.wait()
            raise ConnectionError("storage went away")

    storage = _BrokenStorage()
    signer = UrlSigner(storage, ttl_seconds=3600)  # type: ignore[arg-type]
    watchers = [asyncio.create_task(signer.sign_keys(["jobs/a/p.png"])) for _ in range(3)]
    await asyncio.sleep(0)
    storage.release.set()
    results = await asyncio.gather(*watchers, return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert storage.calls == 1
    storage.release.clear()
    retry = asyncio.create_task(signer.sign_keys(["jobs/a/p.png"]))
    for _ in range(3):  # the retry's request, then its signing call, get to run
        await asyncio.sleep(0)
    assert storage.calls == 2  # nothing is left marked as being signed
    retry.cancel()
