"""WebRTC voice activity detection (PyPI ``webrtcvad-wheels``), the default detector."""

from __future__ import annotations

import webrtcvad

from hushgate.engines.base import EngineOptions, EngineSpec, Pcm16

SAMPLE_RATE_HZ = 16_000
FRAME_SAMPLES = 320  # 20 ms: webrtcvad accepts only 10, 20 or 30 ms frames


class WebRtcActivity:
    frame_samples = FRAME_SAMPLES
    sample_rate_hz = SAMPLE_RATE_HZ

    def __init__(self, aggressiveness: int) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: Pcm16) -> bool:
        return bool(self._vad.is_speech(frame.tobytes(), SAMPLE_RATE_HZ))


class WebRtcDetector:
    name = "webrtc"

    def open(self, *, aggressiveness: int) -> WebRtcActivity:
        return WebRtcActivity(aggressiveness)


def create(options: EngineOptions) -> WebRtcDetector:
    return WebRtcDetector()


SPEC = EngineSpec(name="webrtc", capability="vad", factory=create, description="WebRTC VAD, 20 ms frames")
