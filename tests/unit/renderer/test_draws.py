"""DrawBook: a draw outlives its caller, is joined by a second caller, and stops only when told."""

from __future__ import annotations

import asyncio

import pytest

from mangakai_renderer.draws import DrawBook


async def test_a_draw_outlives_a_cancelled_caller_and_a_second_caller_joins_it() -> None:
    book = DrawBook()
    started = 0
    release = asyncio.Event()

    async def draw() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "image"

    first = asyncio.create_task(book.run("jobs/a/panels/01/v1.png", "jobs/a", draw))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(book) == 1, "the draw goes on without its caller"

    second = asyncio.create_task(book.run("jobs/a/panels/01/v1.png", "jobs/a", draw))
    await asyncio.sleep(0)
    release.set()
    assert await second == "image"
    assert started == 1, "the second caller joined the draw in flight"
    assert len(book) == 0


async def test_cancelling_a_job_stops_its_draws_only() -> None:
    book = DrawBook()
    forever = asyncio.Event()

    async def draw() -> str:
        await forever.wait()
        return "never"

    mine = asyncio.create_task(book.run("jobs/a/panels/01/v1.png", "jobs/a", draw))
    other = asyncio.create_task(book.run("jobs/b/panels/01/v1.png", "jobs/b", draw))
    await asyncio.sleep(0)
    assert book.cancel_job("jobs/a") == 1
    with pytest.raises(asyncio.CancelledError):
        await mine
    assert not other.done()
    other.cancel()
    await book.close(grace=0.01)
    assert len(book) == 0


async def test_close_waits_for_draws_within_the_grace_then_cancels_the_rest() -> None:
    book = DrawBook()

    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "quick"

    async def stuck() -> str:
        await asyncio.Event().wait()
        return "stuck"

    done = asyncio.create_task(book.run("k1", "jobs/a", quick))
    hung = asyncio.create_task(book.run("k2", "jobs/a", stuck))
    await asyncio.sleep(0)
    await book.close(grace=0.2)
    assert await done == "quick"
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert len(book) == 0
