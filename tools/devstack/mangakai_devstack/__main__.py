"""Command line for the local stack (`make up`, `make down`, `make run`).

    python -m mangakai_devstack up     [--dir .run] [--replicas N] [--nats-cluster 3]
                                       start detached, write <dir>/stack.json, print the gateway address
    python -m mangakai_devstack down   [--dir .run] [--purge]
                                       stop what stack.json (or the ready files) name; --purge also
                                       deletes PostgreSQL's data, wherever it lives (make clean)
    python -m mangakai_devstack status [--dir .run]   show each component and whether it is alive
    python -m mangakai_devstack run    [--dir .run]   like up, but in the foreground until Ctrl-C

`--replicas N` runs N processes of every service (replica i on 127.0.0.(i+1),
all reached through one name per service served by the stack's own DNS);
`--nats-cluster 3` runs a three-node JetStream cluster instead of one server.

`down` and `status` run in a different process from the one that started the
stack, so they work from pids; a pid is signalled only when its command line
is still the program we started (pids get reused).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mangakai_devstack.dns import DnsError
from mangakai_devstack.nats import NatsError
from mangakai_devstack.postgres import PostgresError, PostgresServer
from mangakai_devstack.processes import command_line, is_alive, log_tail, stop_pid
from mangakai_devstack.services import ServiceStartError, check_health, tls_credentials
from mangakai_devstack.stack import SERVICE_MODULES, SERVICE_ORDER, Stack

STATE_FILE = "stack.json"
STOP_TIMEOUT = 15.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory = Path(args.dir).absolute()
    if args.command in ("up", "run"):
        shape = StackShape(_modules(args.module), args.replicas, args.nats_cluster, args.tls)
        return up(directory, shape) if args.command == "up" else run(directory, shape)
    if args.command == "down":
        return down(directory, purge=args.purge)
    return status(directory)


@dataclass(frozen=True)
class StackShape:
    """What `up`/`run` start: stand-in modules, replicas per service, NATS nodes."""

    modules: Mapping[str, str]
    replicas: int = 1
    nats_nodes: int = 1
    tls: bool = False


def up(directory: Path, shape: StackShape) -> int:
    state = _read_state(directory)
    if state is not None:
        if _all_alive(state):
            _say(f"stack already up in {directory}")
            if state.get("web_url"):
                _say(f"open the web app at {state['web_url']}")
            print(state["gateway_address"])
            return 0
        _say(f"stack in {directory} is partly down; stopping what is left first")
        down(directory)
    stack = _start(directory, shape)
    if stack is None:
        return 1
    _say(
        f"stack up in {directory}: logs in {directory / 'logs'}; stop with: python -m mangakai_devstack down"
    )
    if stack.web_url:
        _say(f"open the web app at {stack.web_url}")
    print(stack.gateway_address)
    return 0


def run(directory: Path, shape: StackShape) -> int:
    """Starts the stack and keeps it until SIGINT/SIGTERM or until a component dies."""
    if (state := _read_state(directory)) is not None and _all_alive(state):
        _say(f"a stack is already up in {directory}; stop it first (python -m mangakai_devstack down)")
        return 1
    if state is not None:
        down(directory)
    stack = _start(directory, shape)
    if stack is None:
        return 1

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    _say(
        f"gateway at {stack.gateway_address}, web app at {stack.web_url}; logs in {directory / 'logs'}; "
        "Ctrl-C stops the stack"
    )
    code = 0
    try:
        while True:
            time.sleep(0.5)
            dead = [
                service
                for name in stack.services
                for service in stack.replicas(name)
                if not service.is_running()
            ]
            if dead or not stack.nats.is_running():
                for service in dead:
                    _say(
                        f"{service.name} exited with {service.returncode}:\n{log_tail(service.log_path, 20)}"
                    )
                if not stack.nats.is_running():
                    _say(f"nats-server exited:\n{log_tail(stack.nats.log_path, 20)}")
                code = 1
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the orderly stop short
        _say("stopping the stack")
        stack.stop(STOP_TIMEOUT)
        (directory / STATE_FILE).unlink(missing_ok=True)
    return code


def down(directory: Path, *, purge: bool = False) -> int:
    """Stops the services (reverse order), NATS, then PostgreSQL; removes stack.json.

    `purge` also deletes PostgreSQL's data, which may live outside `directory`
    (in the postgres user's home when that user cannot reach the checkout).
    """
    state = _read_state(directory) or {}
    replicas: list[dict[str, Any]] = state.get("replicas") or [
        {"service": name, **service}
        for name, service in (state.get("services") or _services_from_ready_files(directory)).items()
    ]
    stopped: list[str] = []
    for replica in reversed(replicas):
        name = replica.get("service", "")
        pid, module = replica.get("pid"), replica.get("module") or SERVICE_MODULES.get(name, "")
        if isinstance(pid, int) and _is_our_service(pid, module):
            stop_pid(pid, STOP_TIMEOUT)
            stopped.append(name if not replica.get("index") else f"{name}-{replica['index']}")
    dns_pid = state.get("dns", {}).get("pid")
    if isinstance(dns_pid, int) and _is_our_service(dns_pid, "mangakai_devstack.dns"):
        stop_pid(dns_pid, STOP_TIMEOUT)
        stopped.append("dns")
    nats = state.get("nats", {})
    nats_pids = [node.get("pid") for node in nats.get("nodes") or [nats]] if nats.get("owned") else []
    if not state:
        nats_pids = [
            int(p.stem.rsplit("_", 1)[-1]) for p in (directory / "nats").glob("**/ports/nats-server_*.ports")
        ]
    for pid in nats_pids:
        if isinstance(pid, int) and _is_nats(pid):
            stop_pid(pid, STOP_TIMEOUT)
            stopped.append("nats")
    if state.get("postgres", {"owned": True}).get("owned"):
        postgres = PostgresServer(directory / "pg")
        if postgres.is_running():
            postgres.stop(STOP_TIMEOUT)
            stopped.append("postgres")
        if purge:
            postgres.remove(STOP_TIMEOUT)
    (directory / STATE_FILE).unlink(missing_ok=True)
    _say(f"stopped {', '.join(stopped)}" if stopped else f"nothing was running in {directory}")
    return 0


def status(directory: Path) -> int:
    state = _read_state(directory)
    if state is None:
        _say(f"no stack in {directory} (no {STATE_FILE})")
        return 1
    rows = [("postgres", state["postgres"]["pid"], _postgres_alive(state), state["database_url"])]
    for index, node in enumerate(state["nats"].get("nodes") or [state["nats"]]):
        label = "nats" if len(state["nats"].get("nodes") or [1]) == 1 else f"nats-{index}"
        rows.append((label, node["pid"], _is_alive_nats(node.get("pid")), node["url"]))
    replicas = state.get("replicas") or [
        {"service": n, "index": 0, **s} for n, s in state["services"].items()
    ]
    for replica in replicas:
        name = replica["service"] if not replica.get("index") else f"{replica['service']}-{replica['index']}"
        http = (
            state.get("storage_http_url")
            if replica["service"] == "storage" and not replica.get("index")
            else None
        )
        where = replica["address"] + (f"  http {http}" if http else "")
        rows.append(
            (name, replica["pid"], _service_alive(replica["service"], replica, state.get("tls")), where)
        )
    for name, pid, alive, where in rows:
        print(f"{name:<13} {'up' if alive else 'DOWN':<5} pid {pid!s:<8} {where}")
    print(f"gateway: {state['gateway_address']}   logs: {Path(state['base_dir']) / 'logs'}")
    if state.get("web_url"):
        print(f"web app: {state['web_url']}")
    return 0 if all(alive for _, _, alive, _ in rows) else 1


# Helpers


def _start(directory: Path, shape: StackShape) -> Stack | None:
    stack = Stack(
        directory,
        durable=True,
        detach=True,
        modules=shape.modules,
        replicas=shape.replicas,
        nats_nodes=shape.nats_nodes,
        tls=shape.tls,
    )
    try:
        stack.start()
    except (ServiceStartError, PostgresError, NatsError, DnsError) as exc:
        _say(f"the stack did not start: {exc}")
        return None
    _write_state(directory, stack.describe())
    return stack


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(directory / STATE_FILE)


def _services_from_ready_files(directory: Path) -> dict[str, Any]:
    """What an interrupted `up` left without a stack.json: pids from the ready files."""
    found: dict[str, Any] = {}
    for name in SERVICE_ORDER:
        with contextlib.suppress(OSError, ValueError, TypeError):
            found[name] = {"pid": json.loads((directory / "run" / f"{name}.ready").read_text())["pid"]}
    return found


def _is_our_service(pid: int, module: str) -> bool:
    argv = command_line(pid)
    return is_alive(pid) and len(argv) >= 3 and argv[1:3] == ["-m", module]


def _is_nats(pid: int) -> bool:
    argv = command_line(pid)
    return is_alive(pid) and bool(argv) and Path(argv[0]).name == "nats-server"


def _postgres_alive(state: dict[str, Any]) -> bool:
    pid = state["postgres"]["pid"]
    return (
        isinstance(pid, int)
        and is_alive(pid)
        and PostgresServer(Path(state["postgres"]["directory"])).is_running()
    )


def _is_alive_nats(pid: object) -> bool:
    return isinstance(pid, int) and _is_nats(pid)


def _nats_alive(state: dict[str, Any]) -> bool:
    return all(_is_alive_nats(node.get("pid")) for node in state["nats"].get("nodes") or [state["nats"]])


def _service_alive(name: str, service: dict[str, Any], tls: dict[str, str] | None) -> bool:
    pid = service["pid"]
    # Under mutual TLS the internal services answer the operator's certificate; the gateway is plaintext.
    credentials = tls_credentials(tls) if name != "gateway" else None
    return (
        isinstance(pid, int)
        and _is_our_service(pid, service["module"])
        and check_health(service["address"], credentials=credentials)
    )


def _all_alive(state: dict[str, Any]) -> bool:
    try:
        return (
            _postgres_alive(state)
            and _nats_alive(state)
            and set(state["services"]) == set(SERVICE_ORDER)
            and all(
                _service_alive(replica["service"], replica, state.get("tls"))
                for replica in state.get("replicas")
                or [{"service": name, **service} for name, service in state["services"].items()]
            )
        )
    except (KeyError, TypeError):
        return False


def _modules(specs: Sequence[str]) -> dict[str, str]:
    modules: dict[str, str] = {}
    for spec in specs:
        name, sep, module = spec.partition("=")
        if not sep or name not in SERVICE_ORDER or not module:
            raise SystemExit(
                f"--module expects NAME=MODULE with NAME one of {', '.join(SERVICE_ORDER)}; got {spec!r}"
            )
        modules[name] = module
    return modules


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    return parse


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=".run", help="the stack's base directory (default: .run)")
    starting = argparse.ArgumentParser(add_help=False)
    starting.add_argument(
        "--replicas", type=_count(1, 50), default=1, metavar="N", help="processes per service (default: 1)"
    )
    starting.add_argument(
        "--nats-cluster",
        type=_count(1, 7),
        default=1,
        metavar="NODES",
        help="run NATS as a JetStream cluster of NODES servers (3 in production; default: 1)",
    )
    starting.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="NAME=MODULE",
        help="run service NAME as `python -m MODULE` instead of its own package (for stand-ins)",
    )
    starting.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS between the services, a certificate per service from a local CA (in DIR/tls)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m mangakai_devstack", description="Start and stop the local MangakAI stack."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", parents=[common, starting], help="start the stack in the background")
    commands.add_parser("run", parents=[common, starting], help="start the stack in the foreground")
    stopping = commands.add_parser("down", parents=[common], help="stop the stack")
    stopping.add_argument("--purge", action="store_true", help="also delete PostgreSQL's data")
    commands.add_parser("status", parents=[common], help="show what is running")
    return parser


if __name__ == "__main__":
    sys.exit(main())
