"""The `mangakai` commands against an in-process fake gateway."""

from __future__ import annotations

import json
import stat
import uuid

import pytest
from fake_gateway import (
    PDF_BYTES,
    Cli,
    FakeGateway,
    FileServer,
    add_regeneration,
    bad_request,
    png_bytes,
    rate_limited,
    scripted_job,
)

from mangakai.v1 import common_pb2

JobState = common_pb2.Job.State


async def test_generate_end_to_end(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.add(scripted_job(files, panels=3))
    cli.work.write("story.txt", "雨の日。Aki waits at Kyoto station.\n")

    code = await cli(
        "generate",
        "story.txt",
        "--panels",
        "3",
        "--art-style",
        "shonen",
        "--color-palette",
        "black-and-white",
        "--mood",
        "mysterious",
        "--layout",
        "four-koma",
        "--reading-order",
        "ltr",
        "--notes",
        "lots of rain",
    )

    out = capsys.readouterr().out
    assert code == 0, out
    [request] = gateway.create_requests
    assert request.story == "雨の日。Aki waits at Kyoto station.\n"
    assert request.panel_count == 3
    assert request.style.art_style == common_pb2.ART_STYLE_SHONEN
    assert request.style.color_palette == common_pb2.COLOR_PALETTE_BLACK_AND_WHITE
    assert request.style.mood == common_pb2.MOOD_MYSTERIOUS
    assert request.style.notes == "lots of rain"
    assert request.layout == common_pb2.PAGE_LAYOUT_FOUR_KOMA
    assert request.reading_order == common_pb2.READING_ORDER_LEFT_TO_RIGHT
    uuid.UUID(request.request_id)
    assert [r.format for r in gateway.export_requests] == [common_pb2.EXPORT_FORMAT_PDF]

    assert cli.work.read("out", f"{job.uuid}.pdf") == PDF_BYTES
    for n in (1, 2, 3):
        assert cli.work.read("out", job.uuid, f"panel-{n:02d}.png") == png_bytes(n)
    assert job.name in out
    assert 'plan ready: "Rain over Kyoto", 3 scenes' in out
    assert f"out/{job.uuid}.pdf" in out
    # Nothing half-downloaded is left behind.
    assert not cli.work.partial_downloads()


async def test_generate_reports_failed_panels(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.add(
        scripted_job(files, panels=3, failed_panels={2: "the image backend refused the prompt"})
    )
    cli.work.write("story.txt", "A story.")

    code = await cli("generate", "story.txt", "--out", "manga.pdf", "--images-dir", "pics")

    captured = capsys.readouterr()
    assert code == 1
    assert "panel 2: the image backend refused the prompt" in captured.err
    assert cli.work.read("manga.pdf") == PDF_BYTES
    assert cli.work.names("pics") == ["panel-01.png", "panel-03.png"]
    assert not cli.work.exists("out", job.uuid)


async def test_generate_of_a_failed_job_exits_1_without_export(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.add(scripted_job(files, planning_failure="the story could not be planned"))
    cli.work.write("story.txt", "A story.")

    code = await cli("generate", "story.txt")

    out = capsys.readouterr().out
    assert code == 1
    assert f"{job.name} failed: the story could not be planned" in out
    assert gateway.export_requests == []
    assert not cli.work.exists("out")


async def test_generate_reads_the_story_from_stdin(
    cli: Cli, gateway: FakeGateway, files: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    gateway.add(scripted_job(files))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Ein Märchen.".encode())))

    assert await cli("generate", "-", "--no-wait") == 0
    assert gateway.create_requests[0].story == "Ein Märchen."


async def test_create_job_is_retried_with_the_same_request_id(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.add(scripted_job(files))
    gateway.lose_create_replies = 1
    cli.work.write("story.txt", "A story.")

    code = await cli("generate", "story.txt", "--no-wait")

    assert code == 0
    first, second = gateway.create_requests
    assert first.request_id == second.request_id != ""
    assert list(gateway.jobs) == [job.name]
    assert capsys.readouterr().out.strip() == job.name


async def test_watch_resumes_after_a_broken_stream(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.existing(scripted_job(files, panels=2))
    gateway.break_watch_after = 2

    code = await cli("watch", job.uuid)

    out = capsys.readouterr().out
    assert code == 0, out
    assert [(r.name, r.after_sequence) for r in gateway.watch_requests] == [(job.name, 0), (job.name, 2)]
    # Every event shown exactly once, across the break.
    assert out.count("plan ready") == 1
    assert out.count("panel 1 done") == 1
    assert out.count("panel 2 done") == 1
    assert f"{job.name} completed" in out


async def test_watch_of_a_finished_job_prints_its_end(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.existing(scripted_job(files, planning_failure="no scenes found"))
    job.emitted = len(job.events)

    code = await cli("watch", job.name)

    assert code == 1
    assert f"{job.name} failed: no scenes found" in capsys.readouterr().out
    assert gateway.watch_requests == []


async def test_watch_json_prints_one_event_per_line(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.existing(scripted_job(files, panels=1))

    assert await cli("watch", job.name, "--json") == 0

    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(job.events) + 1))
    assert events[-1]["terminal"] is True


async def test_invalid_argument_lists_field_violations(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.errors["CreateJob"] = bad_request(
        "invalid request", panel_count="must be 1 to 24", story="must not be only white space"
    )
    cli.work.write("story.txt", "   ")

    code = await cli("generate", "story.txt", "--panels", "99")

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert "INVALID_ARGUMENT: invalid request" in err
    assert "panel_count: must be 1 to 24" in err
    assert "story: must not be only white space" in err


async def test_rate_limit_shows_the_retry_delay(
    cli: Cli, gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.errors["ListJobs"] = rate_limited(3)

    code = await cli("jobs")

    err = capsys.readouterr().err
    assert code == 1
    assert "RESOURCE_EXHAUSTED: too many requests from this session" in err
    assert "retry in 3 s" in err


async def test_session_token_is_created_once_and_reused(
    cli: Cli, gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("jobs") == 0
    assert await cli("jobs") == 0

    assert len(gateway.session_requests) == 1
    assert gateway.session_requests[0].client.startswith("mangakai-cli/")
    first, second = gateway.tokens_used
    assert first == second
    assert stat.S_IMODE(cli.session_file.stat().st_mode) == 0o600
    stored = json.loads(cli.session_file.read_text())
    assert stored["gateways"][gateway.address]["token"] == first


async def test_an_unknown_saved_session_is_replaced(
    cli: Cli, gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("jobs") == 0
    gateway.tokens.clear()  # the gateway forgot every session

    assert await cli("jobs") == 0

    assert len(gateway.session_requests) == 2
    assert "not accepted" in capsys.readouterr().err


async def test_jobs_all_follows_page_tokens(
    cli: Cli, gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.page_of = [
        common_pb2.Job(
            name=f"jobs/{uuid.uuid4()}", state=JobState.STATE_COMPLETED, title=f"Story {i}", panel_count=4
        )
        for i in range(5)
    ]

    assert await cli("jobs", "--all", "--page-size", "2", "--json") == 0

    listed = json.loads(capsys.readouterr().out)
    assert [j["title"] for j in listed["jobs"]] == [f"Story {i}" for i in range(5)]
    assert [r.page_token for r in gateway.list_requests] == ["", "2", "4"]


async def test_show_prints_scenes_dialogue_and_versions(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.existing(scripted_job(files, panels=2, failed_panels={2: "timed out"}))
    job.emitted = len(job.events)

    assert await cli("show", job.uuid) == 0

    out = capsys.readouterr().out
    assert 'title: "Rain over Kyoto" (en)' in out
    assert 'Aki: "It is still raining (2)"' in out
    assert "v1 succeeded" in out
    assert "v1 failed (timed out)" in out


async def test_export_downloads_to_the_given_file(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.existing(scripted_job(files))
    job.emitted = len(job.events)

    assert await cli("export", job.uuid, "--format", "cbz", "--out", "book.cbz") == 0

    assert [r.format for r in gateway.export_requests] == [common_pb2.EXPORT_FORMAT_CBZ]
    assert cli.work.read("book.cbz") == PDF_BYTES  # the fake serves the same bytes for any format


async def test_unknown_job_is_one_line_not_found(
    cli: Cli, gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await cli("show", str(uuid.uuid4()))

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mangakai: NOT_FOUND: jobs/")
    assert err.count("\n") == 1


async def test_bad_choices_are_usage_errors(cli: Cli, gateway: FakeGateway) -> None:
    cli.work.write("story.txt", "A story.")
    with pytest.raises(SystemExit) as exited:
        await cli("generate", "story.txt", "--art-style", "baroque")
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        await cli("watch", "not-a-job")
    assert exited.value.code == 2
    assert gateway.create_requests == []


async def test_regenerate_waits_for_the_new_run_only(
    cli: Cli, gateway: FakeGateway, files: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = gateway.existing(scripted_job(files, panels=2))
    job.emitted = len(job.events)
    first_run = len(job.events)
    add_regeneration(files, job, panel=2)
    cli.work.write_bytes("ref.png", b"\x89PNG reference")

    code = await cli("regenerate", job.uuid, "2", "more rain", "--reference", "ref.png", "--wait")

    out = capsys.readouterr().out
    assert code == 0, out
    [request] = gateway.regenerate_requests
    assert (request.name, request.panel, request.instruction) == (job.name, 2, "more rain")
    assert request.reference_image == b"\x89PNG reference"
    # The first run's events (and its terminal event) are not replayed.
    assert [r.after_sequence for r in gateway.watch_requests] == [first_run]
    assert "panel 2 version 2 drawn" in out
