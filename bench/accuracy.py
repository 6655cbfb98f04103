"""Streamed finals against offline decoding: word error rate per language and model.

    python bench/accuracy.py [--models whisper-tiny.en,whisper-base] [--models-dir DIR]
                             [--languages en,de,es,fr,pt] [--pace full,realtime] [--parallel 4]
                             [--serve-args "--endpointing text"]

For each model, a server is spawned (``hushgate serve`` on loopback, every
language the model knows routed to it) and every transcribed recording of the
shared corpus is streamed through ``/v1/stream``: English from
``librispeech/`` and ``misc/`` (``transcripts.tsv``; ``vosk_test.wav`` is left
out, its reference is approximate), German, Spanish, French and Portuguese from
``fleurs/``. One session per file, with a second of silence after the speech;
the joined ``final`` texts are that file's hypothesis.

* ``full`` pace sends the audio as fast as the socket takes it, one file at a
  time (no partials are decoded: the server skips them while behind);
* ``realtime`` pace sends 100 ms chunks on a live microphone's schedule,
  ``--parallel`` files at once, and also reports the final lag: receive time
  of each ``final`` minus the send time of the audio at its ``t1_ms``.

Next to them, the same model decodes each whole file offline with
faster-whisper (greedy, int8, ``--threads`` CPU threads, no VAD filter): the
accuracy a user would get without streaming. WER is over all files of a
language (jiwer, lower case, punctuation removed). For multilingual models the
offline column also gives faster-whisper's language identification
(``detect_language`` on the whole file), and the streamed one the language the
server reports on finals of a ``language: "auto"`` session, when the server
supports it ("–" otherwise).

A measuring tool, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import shlex
import time
import wave
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import websockets

from core.audio import AUDIO_DIR
from core.server import SpawnedServer
from core.stats import pct
from core.table import fmt, table

SAMPLE_RATE_HZ = 16_000
CHUNK_MS = 100
TAIL_SILENCE_MS = 1_000
PACES = ("full", "realtime")


@dataclass(frozen=True)
class Recording:
    path: Path
    language: str
    reference: str


def normalise(text: str) -> str:
    """Like core.stats.normalise, but keeps every language's letters (ä, ñ, ç …)."""
    text = re.sub(r"[^\w\s']", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


def corpus(audio_dir: Path, languages: Sequence[str]) -> list[Recording]:
    out: list[Recording] = []
    if "en" in languages:
        with open(audio_dir / "transcripts.tsv") as f:
            out += [
                Recording(audio_dir / r["file"], "en", r["transcript"])
                for r in csv.DictReader(f, delimiter="\t")
                if r["transcript"] and r["file"] != "misc/vosk_test.wav"
            ]
    fleurs = audio_dir / "fleurs" / "transcripts.tsv"
    if fleurs.exists():
        with open(fleurs) as f:
            out += [
                Recording(audio_dir / "fleurs" / r["file"], r["language"], r["transcript"])
                for r in csv.DictReader(f, delimiter="\t")
                if r["language"] in languages
            ]
    return out


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE_HZ, 1, 2):
            raise SystemExit(f"{path}: expected 16 kHz mono 16-bit PCM")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


# Offline ----------------------------------------------------------------------------------


@dataclass
class Offline:
    texts: dict[Path, str] = field(default_factory=dict)
    detected: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0


def load_offline(model_path: Path, threads: int) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_path), device="cpu", compute_type="int8", cpu_threads=threads)


def decode_offline(model: Any, recordings: Sequence[Recording]) -> Offline:
    multilingual = model.model.is_multilingual
    out = Offline()
    started = time.perf_counter()
    for rec in recordings:
        audio = read_pcm(rec.path).astype(np.float32) / 32768
        segments, _info = model.transcribe(
            audio, language=rec.language if multilingual else "en", beam_size=1, vad_filter=False
        )
        out.texts[rec.path] = " ".join(s.text.strip() for s in segments)
        if multilingual:
            language, _probability, _all = model.detect_language(audio)
            out.detected[rec.path] = language
    out.seconds = time.perf_counter() - started
    return out


# Streamed ---------------------------------------------------------------------------------


@dataclass
class Streamed:
    text: str = ""
    languages: list[str] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def stream_file(url: str, pcm: np.ndarray, language: str, *, realtime: bool) -> Streamed:
    """One session: the file, then a second of silence, then ``stop``; read until ``ended``."""
    out = Streamed()
    audio = np.concatenate([pcm, np.zeros(SAMPLE_RATE_HZ * TAIL_SILENCE_MS // 1000, np.int16)])
    chunk = SAMPLE_RATE_HZ * CHUNK_MS // 1000
    sent_at: list[float] = []  # perf_counter after chunk k went out
    finals: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(
            json.dumps(
                {"type": "start", "audio": {"sample_rate": SAMPLE_RATE_HZ}, "language": language, "partials": True}
            )
        )
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            out.errors.append(f"refused: {ready.get('code')}: {ready.get('message')}")
            return out

        async def read() -> None:
            async for frame in ws:
                if isinstance(frame, bytes):
                    continue
                event = json.loads(frame)
                if event["type"] == "final":
                    event["received"] = time.perf_counter()
                    finals.append(event)
                elif event["type"] == "error":
                    out.errors.append(f"{event.get('code')}: {event.get('message')}")
                elif event["type"] == "ended":
                    return

        reader = asyncio.create_task(read())
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(audio), chunk)):
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_MS / 1000 - time.perf_counter()))
            await ws.send(audio[i : i + chunk].tobytes())
            sent_at.append(time.perf_counter())
        await ws.send(json.dumps({"type": "stop"}))
        try:
            await asyncio.wait_for(reader, 300)
        except TimeoutError:
            out.errors.append("no `ended` within 300 s")
    out.text = " ".join(f["text"] for f in finals if f.get("text"))
    out.languages = [f["language"] for f in finals if f.get("language")]
    if realtime:
        for f in finals:
            k = max(0, -(-int(f["t1_ms"]) // CHUNK_MS) - 1)
            # Finals cut by ``stop`` are not end-of-speech finals.
            if k < len(sent_at) and f["t1_ms"] + 500 < len(audio) * 1000 // SAMPLE_RATE_HZ:
                out.lags_ms.append((f["received"] - sent_at[k]) * 1000)
    return out


async def stream_all(
    url: str, recordings: Sequence[Recording], *, realtime: bool, parallel: int, auto: bool = False
) -> dict[Path, Streamed]:
    gate = asyncio.Semaphore(parallel if realtime else 1)

    async def one(rec: Recording) -> tuple[Path, Streamed]:
        async with gate:
            return rec.path, await stream_file(
                url, read_pcm(rec.path), "auto" if auto else rec.language, realtime=realtime
            )

    return dict(await asyncio.gather(*(one(r) for r in recordings)))


# Report -----------------------------------------------------------------------------------


def wer(refs: list[str], hyps: list[str]) -> float:
    return 100 * jiwer.wer(refs, hyps)


def run_model(name: str, args: argparse.Namespace) -> list[list[str]]:
    from hushgate.models.locate import locate_model

    model_path = locate_model(name, engine="whisper", models_dir=args.models_dir)
    model = load_offline(model_path, args.threads)
    # None: a multilingual model, every language; English-only models serve English.
    only = None if model.model.is_multilingual else ("en",)
    languages = [lang for lang in args.languages if only is None or lang in only]
    recordings = corpus(args.audio_dir, languages)
    if not recordings:
        return []
    print(f"\n## {name} ({model_path}): {len(recordings)} recordings, languages {', '.join(languages)}", flush=True)
    offline = decode_offline(model, recordings)
    del model
    print(f"offline decode: {offline.seconds:.0f} s", flush=True)
    env = {
        "HUSHGATE_STT": ",".join(f"{lang}=whisper:{name}" for lang in languages),
        "HUSHGATE_DEFAULT_LANGUAGE": languages[0],
        "HUSHGATE_TRANSLATORS": "",
        "HUSHGATE_SYNTHESIZERS": "",
        "HUSHGATE_SPEAKER_ENCODER": "",
        "HUSHGATE_MAX_SESSIONS": str(max(8, args.parallel + 1)),
    }
    if args.models_dir is not None:
        env["HUSHGATE_MODELS_DIR"] = str(args.models_dir)
    server = SpawnedServer(shlex.split(args.serve_args), env)
    print(f"server: {server.describe()}", flush=True)
    server.start()
    streamed: dict[str, dict[Path, Streamed]] = {}
    auto: dict[Path, Streamed] = {}
    try:
        for pace in args.pace:
            started = time.perf_counter()
            streamed[pace] = asyncio.run(
                stream_all(server.url, recordings, realtime=pace == "realtime", parallel=args.parallel)
            )
            print(f"streamed at {pace} pace: {time.perf_counter() - started:.0f} s", flush=True)
        if only is None:
            auto = asyncio.run(stream_all(server.url, recordings, realtime=False, parallel=1, auto=True))
    finally:
        server.stop()
    rows = []
    for lang in languages:
        recs = [r for r in recordings if r.language == lang]
        refs = [normalise(r.reference) for r in recs]
        row = [name, lang, str(len(recs)), f"{wer(refs, [normalise(offline.texts[r.path]) for r in recs]):.1f}"]
        for pace in PACES:
            if pace not in streamed:
                row.append("–")
                continue
            runs = [streamed[pace][r.path] for r in recs]
            errors = sum(len(s.errors) for s in runs)
            row.append(
                f"{wer(refs, [normalise(s.text) for s in runs]):.1f}" + (f" ({errors} errors)" if errors else "")
            )
        lags = [lag for r in recs for lag in streamed["realtime"][r.path].lags_ms] if "realtime" in streamed else []
        row.append(f"{fmt(pct(lags, 50))} / {fmt(pct(lags, 95))}" if lags else "–")
        if only is None:
            hits = sum(offline.detected.get(r.path) == r.language for r in recs)
            row.append(f"{hits}/{len(recs)}")
            said = [Counter(auto[r.path].languages).most_common(1) for r in recs]
            if any(auto[r.path].errors and not auto[r.path].languages for r in recs) or not any(said):
                row.append("–")
            else:
                row.append(
                    f"{sum(bool(s) and s[0][0] == r.language for s, r in zip(said, recs, strict=True))}/{len(recs)}"
                )
        else:
            row += ["–", "–"]
        rows.append(row)
        if args.verbose:
            for r in recs:
                print(
                    f"\n{r.path.name}\n  ref:     {normalise(r.reference)}\n  offline: {normalise(offline.texts[r.path])}"
                )
                for pace in streamed:
                    print(f"  {pace}: {normalise(streamed[pace][r.path].text)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="whisper-tiny.en", help="comma-separated catalogue names or model directories"
    )
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--audio-dir", type=Path, default=AUDIO_DIR)
    parser.add_argument("--languages", default="en,de,es,fr,pt")
    parser.add_argument("--pace", default="full,realtime", help="full and/or realtime")
    parser.add_argument("--parallel", type=int, default=4, help="files streamed at once at real-time pace")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the offline decode")
    parser.add_argument("--verbose", action="store_true", help="print every hypothesis")
    parser.add_argument("--serve-args", default="", help='more `hushgate serve` flags, e.g. "--endpointing text"')
    args = parser.parse_args()
    args.languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    args.pace = [p.strip() for p in args.pace.split(",") if p.strip()]
    if unknown := set(args.pace) - set(PACES):
        raise SystemExit(f"unknown pace {sorted(unknown)}; use {', '.join(PACES)}")
    rows: list[list[str]] = []
    for name in args.models.split(","):
        rows += run_model(name.strip(), args)
    print("\nWER % (lower is better); final lag p50 / p95 ms at real-time pace; language identified / files\n")
    print(
        table(
            [
                "model",
                "language",
                "files",
                "offline WER",
                "streamed WER (full speed)",
                "streamed WER (real time)",
                "final lag p50 / p95",
                "LID offline",
                "LID streamed",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
