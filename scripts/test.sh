#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pivot-translation test needs a second Apertium pair (fr-es: fr→en goes through es).
APERTIUM_PAIRS="${APERTIUM_PAIRS:-fr-es}" EXTRAS=all bash scripts/install.sh
# The browser tests drive Debian's Chromium (a real browser, with a WAV file as
# its microphone); only the tests need it, so the gateway's install does not.
# nginx fronts two replicas in the rolling-restart test (tests/test_rolling_restart.py).
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in chromium chromium-driver nginx; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
  fi
fi
if [ ! -d ../shared/audio ]; then
  echo "../shared/audio is missing: the tests stream the shared recordings" >&2
  exit 1
fi
# Gates before the tests: lint, formatting and types (strict; settings in pyproject.toml).
.venv/bin/ruff check src client/src tests bench
.venv/bin/ruff format --check src client/src tests bench
.venv/bin/mypy -p hushgate
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
