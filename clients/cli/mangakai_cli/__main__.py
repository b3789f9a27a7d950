"""`mangakai`: the command line, its options, and dispatch to the commands.

`main()` is the console script; `run(argv)` is the same as a coroutine, so
tests can drive the CLI inside their own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import grpc
from rich.console import Console

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_cli import commands, enums
from mangakai_cli.client import CLIENT_LABEL, GatewayClient, job_name
from mangakai_cli.config import (
    DEFAULT_GATEWAY,
    ConfigError,
    SessionStore,
    default_session_file,
    resolve_gateway,
)
from mangakai_cli.download import DownloadError
from mangakai_cli.errors import EXIT_FAILURE, describe, exit_code

STYLE_OPTIONS: dict[str, enums.EnumOption] = {
    "art_style": enums.EnumOption(common_pb2.ArtStyle.DESCRIPTOR),
    "mood": enums.EnumOption(common_pb2.Mood.DESCRIPTOR),
    "color_palette": enums.EnumOption(common_pb2.ColorPalette.DESCRIPTOR),
    "character_style": enums.EnumOption(common_pb2.CharacterStyle.DESCRIPTOR),
    "line_style": enums.EnumOption(common_pb2.LineStyle.DESCRIPTOR),
    "composition": enums.EnumOption(common_pb2.Composition.DESCRIPTOR),
}
LAYOUT = enums.EnumOption(common_pb2.PageLayout.DESCRIPTOR)
READING_ORDER = enums.EnumOption(
    common_pb2.ReadingOrder.DESCRIPTOR, aliases={"rtl": "right-to-left", "ltr": "left-to-right"}
)
EXPORT_FORMAT = enums.EnumOption(common_pb2.ExportFormat.DESCRIPTOR)

# `mangakai --help` teaches the whole flow on one screen; the web app's "How it works" says the same.
HOW_IT_WORKS = """\
how it works: story -> plan -> panels -> pages -> export
  story   a text file in any language (English, 日本語, 中文 first), up to 20,000 characters
  plan    split into scenes, one per panel: setting, action, cast, dialogue (mangakai show JOB)
  panels  each scene drawn as a panel, live (mangakai watch JOB); redraw one with
          mangakai regenerate JOB PANEL "what to change"
  pages   --layout classic    five or six panels of varied sizes per page
                   four-koma  four equal panels stacked
                   webtoon    one long vertical strip
                   single     a full page for each panel
          --reading-order rtl (right to left, as manga are read; the default) or ltr
  export  a PDF (generate saves one) or a CBZ: mangakai export JOB --format cbz

without a Gemini key (GEMINI_API_KEY on the renderer) the local backend draws every panel:
  it can:    lighthouse, sea, room, festival, shrine, street, forest, river and mountain
             settings by day, dusk or night, rain, snow, fireworks; figures that keep their
             look from panel to panel, faces that smile, cry or frown; balloons lettered in the
             story's language (vertical Japanese)
  it cannot: draw anything else the story names (animals, vehicles, objects), real poses or
             action, or use a reference image; those need Gemini

example: mangakai generate samples/en/the_lighthouse_keeper.txt --panels 6
"""


def _job_ref(text: str) -> str:
    try:
        return job_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The same options are accepted before and after the command; after it they
    # must not reset what was given before, hence SUPPRESS as their default there.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--gateway",
        metavar="HOST:PORT",
        default=default,
        help=f"gateway address (default: $MANGAKAI_GATEWAY, .run/stack.json, else {DEFAULT_GATEWAY})",
    )
    parser.add_argument(
        "--session-file",
        type=Path,
        metavar="FILE",
        default=default,
        help="where session tokens are kept (default: $XDG_CONFIG_HOME/mangakai/sessions.json)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print machine-readable JSON",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mangakai",
        description="Turn a story into a manga with MangakAI.",
        epilog=HOW_IT_WORKS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=CLIENT_LABEL)
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", parents=[common], help="turn a story file into a manga")
    gen.add_argument("story", metavar="STORY.txt", help="the story, UTF-8 text ('-' reads standard input)")
    gen.add_argument("--panels", type=_positive, default=0, metavar="N", help="number of panels (default: 6)")
    for dest, option in STYLE_OPTIONS.items():
        gen.add_argument(
            f"--{dest.replace('_', '-')}",
            dest=dest,
            choices=option.choices,
            metavar="X",
            help="one of: " + ", ".join(option.choices),
        )
    gen.add_argument("--notes", default="", metavar="TEXT", help="free-form notes for the artist")
    gen.add_argument("--layout", choices=LAYOUT.choices, help="page layout (default: classic)")
    gen.add_argument("--reading-order", choices=READING_ORDER.choices, help="reading order (default: rtl)")
    gen.add_argument(
        "--out", type=Path, metavar="FILE.pdf", help="where to save the PDF (default: out/<job>.pdf)"
    )
    gen.add_argument(
        "--images-dir", type=Path, metavar="DIR", help="where to save panel images (default: out/<job>/)"
    )
    gen.add_argument("--no-wait", action="store_true", help="print the job name and return at once")

    watch = sub.add_parser("watch", parents=[common], help="follow a job's progress live")
    watch.add_argument("job", type=_job_ref, metavar="JOB", help="job name (jobs/UUID) or id")

    jobs = sub.add_parser("jobs", parents=[common], help="list this session's jobs")
    jobs.add_argument("--page-size", type=_positive, default=0, metavar="N")
    jobs.add_argument("--page-token", default="", metavar="T")
    jobs.add_argument("--all", action="store_true", help="follow page tokens to the end")

    show = sub.add_parser("show", parents=[common], help="show a job's plan, panels and versions")
    show.add_argument("job", type=_job_ref, metavar="JOB")

    cancel = sub.add_parser("cancel", parents=[common], help="stop a running job")
    cancel.add_argument("job", type=_job_ref, metavar="JOB")

    regen = sub.add_parser("regenerate", parents=[common], help="draw a new version of one panel")
    regen.add_argument("job", type=_job_ref, metavar="JOB")
    regen.add_argument("panel", type=_positive, metavar="PANEL", help="panel number, from 1")
    regen.add_argument("instruction", help="what to change")
    regen.add_argument("--reference", type=Path, metavar="IMG", help="a reference image (PNG, JPEG or WebP)")
    regen.add_argument("--wait", action="store_true", help="follow the job until the panel is drawn")

    exp = sub.add_parser("export", parents=[common], help="export a finished job and download it")
    exp.add_argument("job", type=_job_ref, metavar="JOB")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMAT.choices)
    exp.add_argument(
        "--out", type=Path, metavar="FILE", help="where to save it (default: out/<job>.<format>)"
    )
    return parser


def _create_job_request(args: argparse.Namespace) -> jobs_pb2.CreateJobRequest:
    style = common_pb2.StylePreferences(notes=args.notes)
    for dest, option in STYLE_OPTIONS.items():
        choice = getattr(args, dest)
        if choice is not None:
            setattr(style, dest, option.number(choice))
    request = jobs_pb2.CreateJobRequest(story=_read_story(args.story), panel_count=args.panels, style=style)
    if args.layout:
        request.layout = common_pb2.PageLayout.ValueType(LAYOUT.number(args.layout))
    if args.reading_order:
        request.reading_order = common_pb2.ReadingOrder.ValueType(READING_ORDER.number(args.reading_order))
    return request


def _read_story(source: str) -> str:
    try:
        if source == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        return Path(source).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


async def _dispatch(args: argparse.Namespace, term: commands.Terminal, client: GatewayClient) -> int:
    command: str = args.command
    if command == "generate":
        return await commands.generate(
            term,
            client,
            _create_job_request(args),
            wait=not args.no_wait,
            out=args.out,
            images_dir=args.images_dir,
        )
    if command == "watch":
        return await commands.watch(term, client, args.job)
    if command == "jobs":
        return await commands.list_jobs(
            term, client, page_size=args.page_size, page_token=args.page_token, all_pages=args.all
        )
    if command == "show":
        return await commands.show(term, client, args.job)
    if command == "cancel":
        return await commands.cancel(term, client, args.job)
    if command == "regenerate":
        reference = args.reference.read_bytes() if args.reference else b""
        return await commands.regenerate(
            term,
            client,
            args.job,
            panel=args.panel,
            instruction=args.instruction,
            reference=reference,
            wait=args.wait,
        )
    if command == "export":
        return await commands.export(
            term,
            client,
            args.job,
            export_format=common_pb2.ExportFormat.ValueType(EXPORT_FORMAT.number(args.format)),
            out=args.out,
        )
    raise AssertionError(f"unknown command {command}")


async def run(argv: list[str]) -> int:
    """Runs one command line and returns its exit code."""
    args = build_parser().parse_args(argv)
    out = Console(highlight=False)
    # Without a fixed file, stderr is looked up on every write, so a live display can redirect it.
    err = Console(stderr=True, highlight=False)
    term = commands.Terminal(out=out, err=err, as_json=args.json)
    gateway: str | None = None
    try:
        gateway = resolve_gateway(args.gateway, os.environ, Path.cwd())
        sessions = SessionStore(args.session_file or default_session_file(os.environ))
        async with GatewayClient(gateway, sessions, notice=term.warn) as client:
            return await _dispatch(args, term, client)
    except grpc.aio.AioRpcError as exc:
        term.warn(describe(exc, gateway=gateway))
        return exit_code(exc)
    except (ConfigError, DownloadError, ConnectionError) as exc:
        term.warn(str(exc))
        return EXIT_FAILURE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        term.warn(f"{where}{exc.strerror or exc}")
        return EXIT_FAILURE


def main() -> None:
    try:
        code = asyncio.run(run(sys.argv[1:]))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
