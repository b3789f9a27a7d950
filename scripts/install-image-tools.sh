#!/usr/bin/env bash
# Installs what `make images` and the image tests (tests/images) need to build and run
# container images without a Docker daemon: podman (with buildah's build engine), runc, and
# mmdebstrap, which makes the base image from Debian's packages when no image registry can
# be reached. Also catatonit, the init of the pause container `podman kube play` starts in
# each pod, and uidmap for podman run by a user other than root. Idempotent: does nothing
# when everything is already there; uses sudo when not run as root.
set -euo pipefail

missing=()
for tool in podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap newuidmap:uidmap; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
compgen -G "/usr/libexec/podman/catatonit" >/dev/null || command -v catatonit >/dev/null \
    || missing+=(catatonit)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing container tools: ${missing[*]}"
$SUDO apt-get update -qq
# With podman's recommended packages, as on the machines where this was checked.
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
