"""Whisper finals: the short window (utterance + 5 s) against faster-whisper's 30 s window.

    python bench/whisper_final.py [--audio-dir ../shared/audio] [--repeats 1] [--model whisper-base]

Cuts every transcribed recording of the shared corpus into utterances with the
gateway's own segmenter (webrtcvad, the default 500 ms of silence), decodes each
utterance with both final decodes of the Whisper engine (word timestamps on, one
CPU thread), and prints the word error rate of each against the references and
the decode time p50 / p95 / max. This is the comparison docs/engines.md quotes.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import time
from pathlib import Path

import jiwer
import numpy as np

from hushgate.engines.base import EngineOptions
from hushgate.engines.webrtcvad import WebRtcActivity
from hushgate.engines.whisper import create
from hushgate.server.segmenter import Segmenter, UtteranceAudio, UtteranceEnd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream import load_wav  # noqa: E402  (bench/stream.py)

DEFAULT_AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"
MODES = ("short", "full")


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


def utterances(pcm: np.ndarray) -> list[np.ndarray]:
    segmenter = Segmenter(WebRtcActivity(3), silence_ms=500, max_utterance_ms=15_000, preroll_ms=300, hangover_ms=200)
    out, current = [], []
    for segment in segmenter.push(np.concatenate([pcm, np.zeros(16_000, np.int16)])) + segmenter.flush():
        if isinstance(segment, UtteranceAudio):
            current.append(segment.pcm)
        elif isinstance(segment, UtteranceEnd) and current:
            out.append(np.concatenate(current).astype(np.float32) / 32768)
            current = []
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--repeats", type=int, default=1, help="decodes per utterance and mode (times only)")
    parser.add_argument("--model", default=None, help="catalogue name or path (default: the default English model)")
    parser.add_argument("--modes", default=",".join(MODES), help="final windows to run, comma-separated")
    args = parser.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m in MODES)
    with open(args.audio_dir / "transcripts.tsv") as f:
        # vosk_test.wav's reference is only approximate (see the audio README).
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["transcript"] and r["file"] != "misc/vosk_test.wav"]
    engine = create(EngineOptions(model=args.model, threads=1, extra={"workers": 1}))
    engine.decode_partial(np.zeros(16_000, np.float32), "en", "")  # warm-up
    references: list[str] = []
    hypotheses: dict[str, list[str]] = {mode: [] for mode in modes}
    times_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    # CPU time of this process: on a shared machine it moves far less than wall time.
    cpu_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    cut = 0
    for row in rows:
        clips = utterances(load_wav(args.audio_dir / row["file"]))
        cut += len(clips)
        references.append(normalise(row["transcript"]))
        for mode in modes:
            decode = engine.decode_short if mode == "short" else engine.decode_full
            texts = []
            for clip in clips:
                for _ in range(args.repeats):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    text = decode(clip, "en", "", True).text
                    times_ms[mode].append((time.perf_counter() - started) * 1000)
                    cpu_ms[mode].append((time.process_time() - cpu_started) * 1000)
                texts.append(text)
            hypotheses[mode].append(normalise(" ".join(texts)))
    engine.close()
    print(f"{engine.model}: {len(rows)} recordings, {cut} utterances, {args.repeats} decode(s) each, 1 thread\n")
    print("| final window | WER % | decode p50 ms | p95 ms | max ms | CPU ms per decode, mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in modes:
        ms = times_ms[mode]
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[-1] if len(ms) > 1 else ms[0]
        print(f"| {mode} | {100 * jiwer.wer(references, hypotheses[mode]):.1f} | "
              f"{statistics.median(ms):.0f} | {p95:.0f} | {max(ms):.0f} | {statistics.mean(cpu_ms[mode]):.0f} |")


if __name__ == "__main__":
    main()
