"""The dev stack's DNS: one name per service, resolving to every replica, as a headless Service does.

Replica i of a service listens on its own loopback address (127.0.0.1,
127.0.0.2, ...) at the port all its replicas share, and `<service>.mangakai.test`
resolves to all of them. Clients use `dns://127.0.0.1:PORT/<service>.mangakai.test:P`
(gRPC's resolver accepts the DNS server in the target's authority), balance
with round_robin and re-resolve when a connection goes away, exactly as in
Kubernetes, so adding or removing a replica locally exercises the same path.

The zone is a JSON file, {"renderer.mangakai.test": ["127.0.0.1", "127.0.0.2"]},
rewritten atomically by the stack when replicas come and go and re-read when
it changes. Run as `python -m mangakai_devstack.dns --zone FILE --ready-file FILE`:
a process of its own, so that a detached stack keeps answering after `up` exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord  # type: ignore[import-untyped]
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer  # type: ignore[import-untyped]

from mangakai_devstack.processes import POLL_SECONDS, kill_child, stop_child

DOMAIN = "mangakai.test"
"""Names end in .test, reserved for testing (RFC 2606): they can never clash with real ones."""
TTL_SECONDS = 1


def service_name(service: str) -> str:
    return f"{service}.{DOMAIN}"


def replica_host(index: int) -> str:
    """The loopback address of replica `index` (Linux routes all of 127.0.0.0/8 to lo)."""
    if not 0 <= index < 254:
        raise ValueError(f"replica index {index} out of range")
    return f"127.0.0.{index + 1}"


def write_zone(path: Path, records: Mapping[str, Sequence[str]]) -> None:
    """Replaces the zone file atomically (the server never reads half of it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({name: list(addresses) for name, addresses in records.items()}, indent=2))
    tmp.replace(path)


class ZoneFileResolver(BaseResolver):  # type: ignore[misc]
    """Answers A queries from the zone file, re-read whenever its modification time changes."""

    def __init__(self, zone_file: Path) -> None:
        self._zone_file = zone_file
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._records: dict[str, list[str]] = {}

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        question = request.q
        name = str(question.qname).rstrip(".").lower()
        addresses = self._zone().get(name)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype in (QTYPE.A, QTYPE.ANY):
            for address in addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL_SECONDS))
        # Other types of a known name (AAAA, TXT): an empty answer, NOERROR.
        return reply

    def _zone(self) -> dict[str, list[str]]:
        with self._lock:
            try:
                stamp = self._zone_file.stat().st_mtime_ns
                if stamp != self._stamp:
                    data: Any = json.loads(self._zone_file.read_text())
                    self._records = {str(k).lower(): [str(a) for a in v] for k, v in data.items()}
                    self._stamp = stamp
            except (OSError, ValueError, AttributeError, TypeError):
                pass  # keep answering from the last good zone
            return self._records


class DnsError(RuntimeError):
    """The DNS server could not be started."""


class StackDns:
    """The DNS server process of one stack: `<directory>/zone.json`, `dns.ready`, `dns.log`."""

    def __init__(self, directory: Path, *, detach: bool = False) -> None:
        self.directory = Path(directory).absolute()
        self.detach = detach
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._records: dict[str, list[str]] = {}

    @property
    def zone_file(self) -> Path:
        return self.directory / "zone.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "dns.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise DnsError("the DNS server is not started")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def target(self, service: str, port: int) -> str:
        """The gRPC target that reaches every replica of `service` (all listen on `port`)."""
        return f"dns://127.0.0.1:{self.port}/{service_name(service)}:{port}"

    def publish(self, service: str, addresses: Sequence[str]) -> None:
        """Makes `service`'s name resolve to `addresses` (the next lookup sees it)."""
        self._records[service_name(service)] = list(addresses)
        write_zone(self.zone_file, self._records)

    def start(self, timeout: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_zone(self.zone_file, self._records)
        ready = self.directory / "dns.ready"
        ready.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "mangakai_devstack.dns"),
                    *("--zone", str(self.zone_file), "--ready-file", str(ready)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        deadline = time.monotonic() + timeout
        while self._port is None:
            if self._proc.poll() is not None:
                raise DnsError(f"the DNS server exited with {self._proc.returncode}; see {self.log_path}")
            try:
                data = json.loads(ready.read_text())
                if data.get("pid") == self._proc.pid:
                    self._port = int(data["port"])
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() >= deadline:
                kill_child(self._proc)
                self._proc = None
                raise DnsError(f"the DNS server did not start within {timeout}s; see {self.log_path}")
            time.sleep(POLL_SECONDS)

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is not None:
            stop_child(self._proc, timeout)
            self._proc = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mangakai_devstack.dns", description=__doc__)
    parser.add_argument("--zone", type=Path, required=True, help="the zone file (JSON: name -> addresses)")
    parser.add_argument("--ready-file", type=Path, required=True, help='written with {"pid", "port"}')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="UDP port; 0 picks a free one")
    args = parser.parse_args(argv)

    server = DNSServer(
        ZoneFileResolver(args.zone.absolute()),
        address=args.host,
        port=args.port,
        logger=DNSLogger("-request,-reply,-truncated,-data", prefix=False),
    )
    port = server.server.server_address[1]
    server.start_thread()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tmp = args.ready_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port}))
    tmp.replace(args.ready_file)
    print(f"serving {DOMAIN} on udp {args.host}:{port} from {args.zone}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
