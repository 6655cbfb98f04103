"""The OpenAI-compatible HTTP API, timed from a client: file transcription and speech's first byte.

transcription
    ``POST /v1/audio/transcriptions`` of a 60 s MP3 (the corpus playlist, encoded in
    memory), ``--runs`` times; wall time per run and the real-time factor (wall ÷
    audio seconds). One request decodes its utterances in order on one stream (each
    final's left context is the utterance before), so one file uses one core;
    ``--stt-concurrency`` (2 by default) bounds how many requests decode at once.
speech
    ``POST /v1/audio/speech`` of a short and a long text in ``wav`` and ``mp3``:
    milliseconds from sending the request to the first audio byte (after a WAV's
    44-byte header) and to the last, median of ``--runs``.

Named ``http_api`` because a ``bench/http.py`` would hide the standard library's
``http`` package from every script run as ``python bench/NAME.py``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import av
import httpx

from core.audio import SAMPLE_RATE_HZ, Pcm, client_audio, load_playlist
from core.cli import add_server_options, run_bench
from core.server import http_base
from core.table import print_sections, table

TEXTS = {
    "short": "Hello there, how can I help?",
    "long": (
        "Sure. The train leaves at half past nine from platform four, and the journey takes about two hours, "
        "so you should arrive a little before noon if everything runs on time."
    ),
}
SPAWN_ENV = {"HUSHGATE_TRANSLATORS": "", "HUSHGATE_SYNTHESIZERS": "piper", "HUSHGATE_SPEAKER_ENCODER": ""}


def mp3_of(pcm: Pcm) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as sink:
        stream = sink.add_stream("libmp3lame", rate=SAMPLE_RATE_HZ, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=SAMPLE_RATE_HZ)
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return out.getvalue()


async def transcription(client: httpx.AsyncClient, seconds: float, runs: int) -> str:
    pcm = client_audio(load_playlist(), 0, seconds)
    mp3 = mp3_of(pcm)
    duration_s = len(pcm) / SAMPLE_RATE_HZ
    rows, walls, words = [], [], 0
    for run in range(1, runs + 1):
        started = time.perf_counter()
        response = await client.post(
            "/v1/audio/transcriptions", files={"file": ("bench.mp3", mp3)}, data={"model": "whisper-1"}
        )
        response.raise_for_status()
        wall = time.perf_counter() - started
        walls.append(wall)
        words = len(response.json()["text"].split())
        rows.append([str(run), f"{wall:.2f}", f"{wall / duration_s:.3f}"])
    median = statistics.median(walls)
    rows.append(["median", f"{median:.2f}", f"{median / duration_s:.3f}"])
    head = f"/v1/audio/transcriptions: {duration_s:.0f} s MP3 ({len(mp3) // 1024} KiB), {words} words"
    return head + "\n\n" + table(["run", "wall s", "real-time factor"], rows, "rrr")


async def speech(client: httpx.AsyncClient, runs: int) -> str:
    rows = []
    for label, text in TEXTS.items():
        for fmt in ("wav", "mp3"):
            firsts, lasts, size = [], [], 0
            for _ in range(runs):
                started, first, size = time.perf_counter(), None, 0
                body = {"model": "tts-1", "input": text, "response_format": fmt}
                async with client.stream("POST", "/v1/audio/speech", json=body) as response:
                    response.raise_for_status()
                    async for chunk in response.aiter_raw():
                        if first is None and size + len(chunk) > (44 if fmt == "wav" else 0):
                            first = time.perf_counter() - started
                        size += len(chunk)
                firsts.append(first or 0.0)
                lasts.append(time.perf_counter() - started)
            rows.append(
                [
                    label,
                    fmt,
                    f"{statistics.median(firsts) * 1000:.0f}",
                    f"{statistics.median(lasts) * 1000:.0f}",
                    str(size),
                ]
            )
    head = "/v1/audio/speech (ms from the request; median of runs)"
    return head + "\n\n" + table(["text", "format", "first audio byte", "last byte", "bytes"], rows, "llrrr")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_server_options(parser, spawn_help="start `hushgate serve` (Whisper tiny.en, Piper joe) and measure it")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the transcribed file")
    args = parser.parse_args()

    async def bench(url: str, pid: int | None) -> list[str]:
        async with httpx.AsyncClient(base_url=http_base(url), timeout=600) as client:
            await client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Warm up."})
            return [await transcription(client, args.seconds, args.runs), await speech(client, args.runs)]

    load = f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}"
    parts, _, _ = run_bench(args, bench, env=SPAWN_ENV)
    print_sections(load, *parts, f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
