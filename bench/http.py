"""The OpenAI-compatible HTTP API, timed from a client: file transcription and speech's first byte.

* ``/v1/audio/transcriptions``: a 60 s MP3 of real speech (recordings from
  ``../shared/audio`` joined and encoded in memory), ``--runs`` times;
  printed: wall time per run and the real-time factor (wall ÷ audio length).
  The server decodes with ``--stt-concurrency`` utterances at once (2 = both
  cores of the development machine).
* ``/v1/audio/speech``: time from sending the request to the first byte of
  audio, and to the last, for a short and a long text in ``wav`` and ``mp3``.

It starts ``hushgate serve`` on a free loopback port (Whisper tiny.en, Piper
joe; no translators, no speaker encoder) unless ``--url`` names a running
server. Nothing here asserts anything about timings.

    python bench/http.py [--runs 3] [--stt-concurrency 2] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and its name
# would hide the standard library's `http` package from httpx.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import av  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"
FILES = ["long/long_2spk_concat.wav", "librispeech/1221-135766-0001.wav", "misc/jfk.wav"]
TARGET_S = 60.0
TEXTS = {
    "short": "Hello there, how can I help?",
    "long": ("Sure. The train leaves at half past nine from platform four, and the journey takes about two hours, "
             "so you should arrive a little before noon if everything runs on time."),
}


def sixty_seconds_of_mp3() -> tuple[bytes, float]:
    pieces = []
    for name in FILES:
        with av.open(str(AUDIO / name)) as source:
            pieces += [f.to_ndarray().reshape(-1) for f in source.decode(audio=0)]
    pcm = np.concatenate(pieces)[: int(TARGET_S * 16_000)].astype(np.int16)
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as sink:
        stream = sink.add_stream("libmp3lame", rate=16_000, layout="mono")
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=16_000)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16_000
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return out.getvalue(), len(pcm) / 16_000


@contextmanager
def spawned(stt_concurrency: int) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root / 'client' / 'src'}",
           "HUSHGATE_TRANSLATORS": "", "HUSHGATE_SYNTHESIZERS": "piper", "HUSHGATE_SPEAKER_ENCODER": ""}
    process = subprocess.Popen([sys.executable, "-m", "hushgate.server.cli", "serve", "--port", str(port),
                                "--stt-concurrency", str(stt_concurrency), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the server did not become ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def transcription(url: str, runs: int) -> None:
    mp3, duration_s = sixty_seconds_of_mp3()
    walls = []
    with httpx.Client(timeout=600) as client:
        for _ in range(runs):
            started = time.perf_counter()
            response = client.post(url + "/v1/audio/transcriptions", files={"file": ("bench.mp3", mp3)},
                                   data={"model": "whisper-1", "response_format": "json"})
            response.raise_for_status()
            walls.append(time.perf_counter() - started)
    words = len(response.json()["text"].split())
    print(f"\n/v1/audio/transcriptions: {duration_s:.1f} s MP3 ({len(mp3) // 1024} KiB), {words} words")
    print("| run | wall s | real-time factor |\n|---|---|---|")
    for i, wall in enumerate(walls, 1):
        print(f"| {i} | {wall:.2f} | {wall / duration_s:.3f} |")
    print(f"| median | {statistics.median(walls):.2f} | {statistics.median(walls) / duration_s:.3f} |")


def speech(url: str, runs: int) -> None:
    print("\n/v1/audio/speech (ms from request to first / last byte; median of runs)")
    print("| text | format | first byte | last byte | bytes |\n|---|---|---|---|---|")
    with httpx.Client(timeout=120) as client:
        for label, text in TEXTS.items():
            for fmt in ("wav", "mp3"):
                firsts, lasts, size = [], [], 0
                for _ in range(runs):
                    started = time.perf_counter()
                    first = None
                    size = 0
                    with client.stream("POST", url + "/v1/audio/speech",
                                       json={"model": "tts-1", "input": text, "response_format": fmt}) as response:
                        response.raise_for_status()
                        for chunk in response.iter_raw():
                            # A WAV's 44-byte header goes out before any audio: count audio bytes only.
                            if first is None and size + len(chunk) > (44 if fmt == "wav" else 0):
                                first = time.perf_counter() - started
                            size += len(chunk)
                    firsts.append(first or 0.0)
                    lasts.append(time.perf_counter() - started)
                print(f"| {label} | {fmt} | {statistics.median(firsts) * 1000:.0f} | "
                      f"{statistics.median(lasts) * 1000:.0f} | {size} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stt-concurrency", type=int, default=2, help="for the started server")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    if args.url:
        transcription(args.url, args.runs)
        speech(args.url, args.runs)
        return
    with spawned(args.stt_concurrency) as url:
        httpx.post(url + "/v1/audio/speech", json={"model": "tts-1", "input": "warm up"}, timeout=60)
        transcription(url, args.runs)
        speech(url, args.runs)


if __name__ == "__main__":
    main()
