"""The whole local mesh in one base directory: PostgreSQL, NATS and the four services, wired together.

Layout of the base directory:

    pg/          PostgreSQL data and log (see postgres.py)
    nats/        JetStream store and log (see nats.py); node0/, node1/... for a cluster
    dns/         the stack's DNS zone, server log and ready file (see dns.py)
    blobs/       storage's filesystem backend
    run/         the services' ready files
    logs/        one log per service replica
    signing.key  storage's URL signing key, generated once and kept

Every service may run as several replicas (`replicas`): replica i listens on
127.0.0.(i+1) at the port its replicas share, and the services reach each
other through one name per service served by the stack's DNS, with
round-robin, as pods reach each other through headless Services. Services
start in dependency order (storage, renderer, orchestrator, gateway) and stop
in reverse, then NATS, then PostgreSQL. A `Stack` may be given servers that
are already running; it then neither starts nor stops them.
`StackFactory` makes such stacks for the tests: one PostgreSQL and one NATS,
many stacks, each with a database of its own.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mangakai_devstack.certificates import OPERATOR, mesh_certificates
from mangakai_devstack.containers import ContainerLauncher
from mangakai_devstack.dns import StackDns, replica_host
from mangakai_devstack.nats import NatsCluster, NatsServer
from mangakai_devstack.postgres import DEFAULT_DATABASE, PostgresServer
from mangakai_devstack.services import DEFAULT_STICKY_PORTS, ServiceProcess

SERVICE_ORDER = ("storage", "renderer", "orchestrator", "gateway")
SERVICE_MODULES: Mapping[str, str] = {
    "storage": "mangakai_storage",
    "renderer": "mangakai_renderer",
    "orchestrator": "mangakai_orchestrator",
    "gateway": "mangakai_gateway",
}
# Ready-file port -> (environment variable of its port, of its host): what replicas share.
SHARED_PORTS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "storage": {"http_port": ("STORAGE_HTTP_PORT", "STORAGE_HTTP_HOST")},
    "gateway": {"web_port": ("WEB_PORT", "WEB_HOST")},
}
# Storage's HTTP port is in signed URLs already handed out: keep it across restarts too.
STICKY_PORTS: Mapping[str, Mapping[str, str]] = {
    "storage": {**DEFAULT_STICKY_PORTS, "http_port": "STORAGE_HTTP_PORT"},
    # The browser app's origin: its stored session token stays valid across a gateway restart.
    "gateway": {**DEFAULT_STICKY_PORTS, "web_port": "WEB_PORT"},
}


class Stack:
    """PostgreSQL, NATS and the services, started and stopped together.

    `overrides` adds environment variables per service ("storage",
    "renderer", "orchestrator", "gateway"), applied last; the rest of the
    environment is inherited (GEMINI_API_KEY, for instance). `modules` replaces
    the module a service runs as (tests use a stand-in). `detach=True` starts
    every process in a session of its own so that it outlives this process.
    `replicas` is the number of processes per service (one number for all, or
    per service name); `nats_nodes` > 1 starts a JetStream cluster of that
    many nodes when the stack owns its NATS. With a `launcher` every service
    runs as a container of its image (containers.py) rather than as a process.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        durable: bool = True,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        postgres: PostgresServer | None = None,
        nats: NatsServer | NatsCluster | None = None,
        database: str = DEFAULT_DATABASE,
        modules: Mapping[str, str] | None = None,
        detach: bool = False,
        service_timeout: float = 60.0,
        replicas: int | Mapping[str, int] = 1,
        nats_nodes: int = 1,
        launcher: ContainerLauncher | None = None,
        tls: bool = False,
    ) -> None:
        counts = {name: replicas for name in SERVICE_ORDER} if isinstance(replicas, int) else replicas
        unknown = set(overrides or {}) | set(modules or {}) | set(counts)
        unknown -= set(SERVICE_ORDER)
        if unknown:
            raise ValueError(
                f"unknown service names {sorted(unknown)}; expected some of {list(SERVICE_ORDER)}"
            )
        self.base_dir = Path(base_dir).absolute()
        self.durable = durable
        self.database = database
        self.detach = detach
        self.service_timeout = service_timeout
        self.launcher = launcher
        # With `tls`: mutual TLS between the services, a certificate per service (and the operator).
        self.tls = tls
        self._tls: dict[str, dict[str, str]] = {}
        self._overrides = {name: dict(env) for name, env in (overrides or {}).items()}
        self._modules = {**SERVICE_MODULES, **(modules or {})}
        bad = {name: n for name, n in counts.items() if not 1 <= n <= 200}
        if bad:
            raise ValueError(f"replica counts must be 1 to 200, got {bad}")
        self.replica_counts = {name: counts.get(name, 1) for name in SERVICE_ORDER}
        self._owns_postgres = postgres is None
        self._owns_nats = nats is None
        self._postgres = postgres or PostgresServer(self.base_dir / "pg", durable=durable)
        self._nats: NatsServer | NatsCluster = nats or (
            NatsCluster(self.base_dir / "nats", nats_nodes, detach=detach)
            if nats_nodes > 1
            else NatsServer(self.base_dir / "nats", detach=detach)
        )
        self._dns = StackDns(self.base_dir / "dns", detach=detach)
        self._services: dict[str, list[ServiceProcess]] = {}

    @property
    def postgres(self) -> PostgresServer:
        return self._postgres

    @property
    def nats(self) -> NatsServer | NatsCluster:
        return self._nats

    @property
    def dns(self) -> StackDns:
        return self._dns

    @property
    def owns_postgres(self) -> bool:
        return self._owns_postgres

    @property
    def owns_nats(self) -> bool:
        return self._owns_nats

    @property
    def nats_namespace(self) -> str:
        """NATS subject namespace of this stack: stacks sharing one NATS server never see each other's jobs."""
        return re.sub(r"[^a-z0-9_]", "_", self.database.lower())[:32]

    @property
    def database_url(self) -> str:
        return self._postgres.dsn_for(self.database)

    @property
    def services(self) -> dict[str, ServiceProcess]:
        """The first replica of each started service, in start order."""
        return {name: replicas[0] for name, replicas in self._services.items()}

    def service(self, name: str, index: int = 0) -> ServiceProcess:
        """Replica `index` of service `name`."""
        return self.replicas(name)[index]

    def replicas(self, name: str) -> list[ServiceProcess]:
        """Every replica of service `name`, by index."""
        try:
            return list(self._services[name])
        except KeyError:
            raise KeyError(f"service {name!r} is not started (started: {list(self._services)})") from None

    def target(self, name: str) -> str:
        """The gRPC target reaching every replica of `name` through the stack's DNS (use round_robin)."""
        return self._dns.target(name, self.service(name).port)

    @property
    def gateway_address(self) -> str:
        """Where clients reach the gateway: its one replica, or the name of all of them."""
        return (
            self.target("gateway") if self.replica_counts["gateway"] > 1 else self.service("gateway").address
        )

    @property
    def web_url(self) -> str | None:
        """The gateway's web listener: the browser app, gRPC-Web and Connect."""
        port = self.service("gateway").ports.get("web_port")
        return f"http://127.0.0.1:{port}/" if port is not None else None

    @property
    def storage_http_url(self) -> str | None:
        port = self.service("storage").ports.get("http_port")
        return f"http://127.0.0.1:{port}" if port is not None else None

    def signing_key(self) -> str:
        """Storage's signing key: random, created on first use, kept in <base>/signing.key."""
        path = self.base_dir / "signing.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(32) + "\n")
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip()

    def start(self) -> None:
        """Starts whatever is not already running; on failure stops what it started and re-raises."""
        try:
            if self._owns_postgres:
                self._postgres.start()
            self._postgres.create_database(self.database)
            if self._owns_nats:
                self._nats.start()
            self._dns.start()
            if self.tls:
                self._tls = mesh_certificates(self.base_dir / "tls", [*SERVICE_ORDER, OPERATOR])
            for name in SERVICE_ORDER:
                self._services[name] = []
                for _ in range(self.replica_counts[name]):
                    self.add_replica(name)
        except BaseException:
            # The start error is the one worth reporting, not a follow-up from the clean-up.
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def add_replica(self, name: str) -> ServiceProcess:
        """Starts one more replica of `name` and publishes its address under the service's name."""
        replicas = self._services.setdefault(name, [])
        index = len(replicas)
        suffix = "" if index == 0 else f"-{index}"
        service = ServiceProcess(
            name,
            self._modules[name],
            self.service_env(name, index),
            log_path=self.base_dir / "logs" / f"{name}{suffix}.log",
            ready_file=self._ready_file(name, index),
            detach=self.detach,
            sticky_ports=STICKY_PORTS.get(name, DEFAULT_STICKY_PORTS),
            host=replica_host(index),
            launcher=self.launcher,
            writable=[self.base_dir / "blobs"] if name == "storage" else [],
        )
        replicas.append(service)
        service.start(self.service_timeout)
        self._dns.publish(name, [replica.host for replica in replicas])
        return service

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the services in reverse order, then NATS and PostgreSQL if this stack started them."""
        errors: list[BaseException] = []
        for name in reversed(list(self._services)):
            for service in reversed(self._services.pop(name)):
                try:
                    service.stop(timeout)
                except Exception as exc:
                    errors.append(exc)
        try:
            self._dns.stop(timeout)
        except Exception as exc:
            errors.append(exc)
        for owned, server in ((self._owns_nats, self._nats), (self._owns_postgres, self._postgres)):
            if owned:
                try:
                    server.stop(timeout)
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def service_env(self, name: str, index: int = 0) -> dict[str, str]:
        """The environment given to replica `index` of service `name` (on top of the inherited one).

        Replica 0 picks free ports; the others listen on their own loopback
        address at replica 0's ports, so that one name and port reach them all.
        """
        host = replica_host(index)
        env = {
            "GRPC_HOST": host,
            "GRPC_PORT": "0",
            "METRICS_PORT": "0",
            # Every replica's metrics on 127.0.0.1 (each on a port of its own), where tools read them.
            "METRICS_HOST": "127.0.0.1",
            "READY_FILE": str(self._ready_file(name, index)),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
        if name == "storage":
            env |= {
                "STORAGE_BACKEND": "fs",
                "STORAGE_DATA_DIR": str(self.base_dir / "blobs"),
                "STORAGE_HTTP_HOST": host,
                "STORAGE_HTTP_PORT": "0",
                "STORAGE_SIGNING_KEY": self.signing_key(),
                # Like PostgreSQL's fsync=off in a non-durable stack (tests, benchmarks).
                "STORAGE_FSYNC": "true" if self.durable else "false",
            }
        elif name == "renderer":
            # RENDERER_BACKEND stays "auto": Gemini when GEMINI_API_KEY is set, the local backend otherwise.
            env |= {
                "STORAGE_ADDR": self.target("storage"),
                # The Gemini quota budget is shared by every renderer replica through NATS.
                "NATS_URL": self._nats.url,
                "NATS_NAMESPACE": self.nats_namespace,
            }
        elif name == "orchestrator":
            env |= {
                "DATABASE_URL": self.database_url,
                "NATS_URL": self._nats.url,
                "NATS_NAMESPACE": self.nats_namespace,
                "RENDERER_ADDR": self.target("renderer"),
                "STORAGE_ADDR": self.target("storage"),
            }
        elif name == "gateway":
            env |= {
                "DATABASE_URL": self.database_url,
                "NATS_URL": self._nats.url,
                "NATS_NAMESPACE": self.nats_namespace,
                "ORCHESTRATOR_ADDR": self.target("orchestrator"),
                "STORAGE_ADDR": self.target("storage"),
                "WEB_HOST": host,
                "WEB_PORT": "0",
            }
        if isinstance(self._nats, NatsCluster) and name != "storage":
            # Streams and KV buckets keep a copy on every node (up to JetStream's 5): losing a node loses nothing.
            env["NATS_REPLICAS"] = str(min(5, len(self._nats.nodes)))
        if index > 0:
            first = self.service(name)
            env["GRPC_PORT"] = str(first.port)
            for key, (port_variable, host_variable) in SHARED_PORTS.get(name, {}).items():
                if key in first.ports:
                    env[port_variable] = str(first.ports[key])
                    env[host_variable] = host
        return env | self._tls.get(name, {}) | self._overrides.get(name, {})

    def describe(self) -> dict[str, Any]:
        """What is running where: the content of stack.json."""
        return {
            "base_dir": str(self.base_dir),
            "gateway_address": self.gateway_address if "gateway" in self._services else None,
            "storage_http_url": self.storage_http_url if "storage" in self._services else None,
            "web_url": self.web_url if "gateway" in self._services else None,
            "database_url": self.database_url,
            "postgres": {
                "pid": self._postgres.pid,
                "port": self._postgres.port,
                "directory": str(self._postgres.directory),
                "log": str(self._postgres.log_path),
                "owned": self._owns_postgres,
            },
            "nats": {
                "pid": self._nats.pid,
                "url": self._nats.url,
                "directory": str(self._nats.directory),
                "log": str(self._nats.log_path),
                "owned": self._owns_nats,
                "nodes": [
                    {"pid": node.pid, "url": node.url, "log": str(node.log_path)}
                    for node in (self._nats.nodes if isinstance(self._nats, NatsCluster) else [self._nats])
                ],
            },
            "dns": {"pid": self._dns.pid, "port": self._dns.port, "zone": str(self._dns.zone_file)},
            # The operator's TLS_* files (grpcurl -cacert/-cert/-key) when the services use mutual TLS.
            "tls": self._tls.get(OPERATOR),
            "targets": {name: self.target(name) for name in self._services},
            # The first replica of each service (what single-replica tools read).
            "services": {name: self._describe(replicas[0]) for name, replicas in self._services.items()},
            # Every replica of every service.
            "replicas": [
                {"service": name, "index": index, **self._describe(service)}
                for name, replicas in self._services.items()
                for index, service in enumerate(replicas)
            ],
        }

    @staticmethod
    def _describe(service: ServiceProcess) -> dict[str, Any]:
        return {
            "pid": service.pid,
            "module": service.module,
            "host": service.host,
            "address": service.address,
            "ports": service.ports,
            "log": str(service.log_path),
        }

    def _ready_file(self, name: str, index: int = 0) -> Path:
        return self.base_dir / "run" / (f"{name}.ready" if index == 0 else f"{name}-{index}.ready")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class StackFactory:
    """Starts stacks that share one PostgreSQL and one NATS server; `close` stops them all.

    Each stack gets a fresh database, so tests do not see each other's rows,
    and a directory of its own under `base_dir`. The servers stay up.
    """

    def __init__(
        self,
        postgres: PostgresServer,
        nats: NatsServer | NatsCluster,
        base_dir: Path,
        *,
        modules: Mapping[str, str] | None = None,
    ) -> None:
        self.postgres = postgres
        self.nats = nats
        self.base_dir = Path(base_dir)
        self.modules = dict(modules or {})
        self._stacks: list[Stack] = []

    def __call__(
        self,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        *,
        modules: Mapping[str, str] | None = None,
        database: str | None = None,
        replicas: int | Mapping[str, int] = 1,
    ) -> Stack:
        """A started stack (non-durable); `database` reuses a named database instead of a fresh one."""
        stack = Stack(
            self.base_dir / f"stack{len(self._stacks)}",
            durable=False,
            overrides=overrides,
            postgres=self.postgres,
            nats=self.nats,
            database=database or f"t_{uuid.uuid4().hex[:16]}",
            modules={**self.modules, **(modules or {})},
            replicas=replicas,
        )
        self._stacks.append(stack)  # before start: a stack that fails half-way is still closed
        stack.start()
        return stack

    def close(self) -> None:
        """Stops every stack made here, newest first, even if one of them fails to stop."""
        errors: list[Exception] = []
        while self._stacks:
            try:
                self._stacks.pop().stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
