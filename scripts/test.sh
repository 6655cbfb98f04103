#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=all bash scripts/install.sh
if [ ! -d ../shared/audio ]; then
  echo "../shared/audio is missing: the tests stream the shared recordings" >&2
  exit 1
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
