"""Pluggable engines: one module per backend, plain synchronous Python."""

import os

# onnxruntime (used by the Silero VAD, Piper and faster-whisper) keeps a device
# id and a telemetry database under ~/.cache/Microsoft and $TMPDIR/.ses from
# the moment it is imported, unless this is set first; the gateway promises to
# write nothing (tests/test_privacy.py). An operator may still set it otherwise.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
