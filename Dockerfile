# syntax=docker/dockerfile:1
# The image of one service, built from the repository root:
#   make web        # the gateway's image only: it serves the browser app built into web/dist
#   docker build --build-arg SERVICE=gateway -t mangakai/gateway .
# SERVICE is gateway, orchestrator, renderer or storage. An image holds the API package
# (gen/python), the runtime library (services/runtime) and that one service, each installed
# with only its own dependencies: the renderer's image has no Connect or hypercorn, the
# gateway's no Gemini SDK or reportlab.
#
# This file lives at the root, beside .dockerignore, because the build context is the root:
# `docker build .` finds both without -f, and one file serves every service.
#
# The browser app is built on the host by `make web` rather than in a Node stage here: the
# image then carries the very bundle that `make test` (type check, browser tests) ran
# against, built from the committed lockfile by the same rule, and the image build needs no
# Node image nor npm registry access. A gateway build without web/dist fails at its COPY.

# The official slim Python image, pinned; BASE_IMAGE swaps it (e.g. for a mirror).
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
ARG SERVICE

FROM ${BASE_IMAGE} AS build
ARG SERVICE
# Optional: the certificate authorities pip trusts, for a build behind a proxy that inspects
# TLS (make images mounts the host's trust store and names it here). An ARG of the build
# stage, so that it never reaches the image.
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mangakai
WORKDIR /src
COPY gen/python gen/python
COPY services/runtime services/runtime
COPY services/${SERVICE} services/${SERVICE}
# One pip run: the local packages satisfy each other's requirements by name. Byte-compiled
# here because the container's root filesystem is read-only.
RUN /opt/mangakai/bin/pip install --no-compile ./gen/python ./services/runtime "./services/${SERVICE}"
# IPAexGothic for the renderer's PDF pages comes from matplotlib-fontja, without matplotlib
# (a requirement cannot say --no-deps, so it is not in the renderer's pyproject.toml).
RUN if [ "${SERVICE}" = renderer ]; then \
        /opt/mangakai/bin/pip install --no-compile --no-deps 'matplotlib-fontja>=1.1,<2'; \
    fi \
    && /opt/mangakai/bin/python -m compileall -q -j 0 /opt/mangakai

# What every service's image shares: the installed packages, run as a numeric non-root user.
FROM ${BASE_IMAGE} AS service
RUN groupadd --system --gid 10001 mangakai \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home mangakai
COPY --from=build /opt/mangakai /opt/mangakai
ENV PATH=/opt/mangakai/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRPC_HOST=[::]
USER 10001:10001

# One stage per service: its ports and its entry point (exec form: the service is PID 1 and
# receives SIGTERM, its graceful drain). The last stage picks one by SERVICE, so a build
# only runs the stages that service needs.
FROM service AS gateway
COPY web/dist /opt/mangakai/web
ENV GRPC_PORT=50051 \
    METRICS_PORT=9101 \
    WEB_HOST=[::] \
    WEB_PORT=8080 \
    WEB_ASSETS_DIR=/opt/mangakai/web
EXPOSE 50051 9101 8080
ENTRYPOINT ["python", "-m", "mangakai_gateway"]

FROM service AS orchestrator
ENV GRPC_PORT=50052 \
    METRICS_PORT=9102
EXPOSE 50052 9102
ENTRYPOINT ["python", "-m", "mangakai_orchestrator"]

FROM service AS renderer
ENV GRPC_PORT=50053 \
    METRICS_PORT=9103
EXPOSE 50053 9103
ENTRYPOINT ["python", "-m", "mangakai_renderer"]

FROM service AS storage
ENV GRPC_PORT=50054 \
    METRICS_PORT=9104 \
    STORAGE_HTTP_PORT=8090
EXPOSE 50054 9104 8090
ENTRYPOINT ["python", "-m", "mangakai_storage"]

FROM ${SERVICE}
