"""Services as containers of their images: `podman run` in place of `python -m`.

A `ContainerLauncher` given to a `Stack` (or a `ServiceProcess`) starts each
service as a container of its own image on the host's network, so that the
rest of the stack (PostgreSQL, NATS, the stack's DNS on loopback) stays as it
is and the service binds the ports it reports in its ready file, as a process
would. The container runs as Kubernetes runs the pod (deploy/k8s): the image's
non-root user, a read-only root filesystem with a writable /tmp only, no
capabilities. The directories a service writes on the host (its ready file's,
storage's blobs) are mounted at the same path and handed to the image's user.

`podman run` stays in the foreground: it forwards SIGTERM to the service (PID 1
of the container), waits for it and exits with its code, so stopping the
client process stops the container with its graceful drain. A SIGKILL of the
client would leave the container running, so `kill` removes it by name.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ContainerLauncher:
    """Runs service `name` as a container of `images[name]` with the `podman` command (argv prefix)."""

    podman: Sequence[str]
    images: Mapping[str, str]

    def container_name(self, service: str) -> str:
        """A name no other container of this storage has: stacks share one podman storage."""
        return f"mangakai-{service}-{uuid.uuid4().hex[:12]}"

    def command(
        self, service: str, container: str, env: Mapping[str, str], writable: Sequence[Path]
    ) -> list[str]:
        """The `podman run` argv of `service` in a container named `container`."""
        try:
            image = self.images[service]
        except KeyError:
            raise ValueError(
                f"no image for service {service!r} (images for: {sorted(self.images)})"
            ) from None
        argv = [
            *self.podman,
            "run",
            "--rm",
            f"--name={container}",
            "--network=host",
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs=/tmp",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
        ]
        # `:U` gives the directory to the image's user (uid 10001), which must write there.
        argv += [f"--volume={path}:{path}:U" for path in dict.fromkeys(writable)]
        argv += [f"--env={key}={value}" for key, value in env.items()]
        return [*argv, image]

    def remove(self, container: str) -> None:
        """Removes the container at once (SIGKILL), whether or not its `podman run` is still there."""
        subprocess.run(
            [*self.podman, "rm", "--force", "--time=0", container],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
