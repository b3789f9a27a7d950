#!/usr/bin/env bash
# Builds the services' images from the root Dockerfile with podman (no Docker daemon):
#   scripts/build-images.sh [SERVICE...]         (make images; every service by default)
# Each image is tagged mangakai/<service>:$TAG (default dev, the dev overlay's tag).
#
# BASE_IMAGE is the Dockerfile's build argument. Unset, the base is made here from Debian's
# packages (mmdebstrap | podman import), since no image registry may be reachable: Debian
# bookworm's Python 3.11, the same minor version as the official image the Dockerfile
# defaults to. It is made once per package list and kept in the project's podman storage
# (scripts/podman), as are the build's layers: a second run with unchanged sources reuses
# them and only checks that nothing changed.
#
# pip inside the build reaches the package index through the host's network and trusts
# the host's certificate authorities (the host's trust store is mounted for the build only;
# a proxy that inspects TLS is then trusted as the host trusts it).
# JOBS images are built at a time (default 2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
podman=$repo/scripts/podman
tag=${TAG:-dev}
jobs=${JOBS:-2}
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(gateway orchestrator renderer storage)

"$repo/scripts/install-image-tools.sh"
if [[ " ${services[*]} " == *" gateway "* ]] && [ ! -f web/dist/index.html ]; then
    echo "web/dist/index.html is missing: run make web first (the gateway's image serves the web app)" >&2
    exit 1
fi

if [ -z "${BASE_IMAGE:-}" ]; then
    suite=bookworm
    packages=python3,python3-venv,python-is-python3,ca-certificates
    key=$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
    BASE_IMAGE=localhost/mangakai-base:$suite-$key
    if ! "$podman" image exists "$BASE_IMAGE"; then
        echo "making the base image $BASE_IMAGE from Debian's packages"
        SUDO=
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO mmdebstrap --quiet --variant=minbase --include="$packages" "$suite" - \
            | "$podman" import --quiet - "$BASE_IMAGE" >/dev/null
    fi
fi

# What an image is made of: the base image and the files its build reads (the Dockerfile and
# the part of the context it COPYs, without what .dockerignore leaves out). Recorded as a label;
# an image whose label matches is not built again.
inputs() {
    local service=$1 dirs=(gen/python services/runtime "services/$service")
    [ "$service" != gateway ] || dirs+=(web/dist)
    {
        echo "$("$podman" image inspect --format '{{.Id}}' "$BASE_IMAGE") $service"
        sha256sum Dockerfile .dockerignore
        find "${dirs[@]}" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*.egg-info/*' \
            -not -path '*/.mypy_cache/*' -not -path '*/.pytest_cache/*' -not -path '*/.ruff_cache/*' -print0 \
            | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-32
}

build() {
    local service=$1 started=$SECONDS image="mangakai/$service:$tag" key
    key=$(inputs "$service")
    if [ "$("$podman" image inspect --format '{{index .Labels "org.mangakai.inputs"}}' "$image" 2>/dev/null)" = "$key" ]; then
        echo "$image is up to date"
        return 0
    fi
    # No layer cache (--layers=false): with the vfs driver every cached layer is a full copy of
    # the file tree, which costs more time and disk than it saves; the label above is the cache.
    "$podman" build --quiet --network host --layers=false \
        --volume /etc/ssl/certs:/etc/ssl/certs:ro --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "SERVICE=$service" \
        --label "org.mangakai.inputs=$key" --tag "$image" --file Dockerfile . >"$log_dir/$service.log" 2>&1 || {
        echo "building $image failed:" >&2
        tail -n 40 "$log_dir/$service.log" >&2
        return 1
    }
    echo "built $image in $((SECONDS - started)) s"
}

log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
pids=()
failed=0
for service in "${services[@]}"; do
    build "$service" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
# An image built again leaves the one it replaced untagged: a full copy of its files with vfs.
"$podman" image prune --force >/dev/null
exit $failed
