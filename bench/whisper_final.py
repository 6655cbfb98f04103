"""Whisper finals: the short window (utterance + 5 s) against faster-whisper's 30 s window.

    python bench/whisper_final.py [--audio-dir ../shared/audio] [--repeats 1] [--model whisper-base] [--modes short]

Cuts every transcribed recording of the shared corpus into utterances with the
gateway's own segmenter (webrtcvad, the default 500 ms of silence), decodes each
utterance with both final decodes of the Whisper engine (word timestamps on, one
CPU thread), and prints the word error rate of each against the references and
the decode time p50 / p95 / max. This is the comparison docs/engines.md quotes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.audio import AUDIO_DIR, SAMPLE_RATE_HZ, Pcm, load_wav, transcripts
from core.stats import pct, wer_percent
from core.table import fmt, table
from hushgate.engines.base import EngineOptions
from hushgate.engines.webrtcvad import WebRtcActivity
from hushgate.engines.whisper import create
from hushgate.server.segmenter import Segmenter, UtteranceAudio, UtteranceEnd

MODES = ("short", "full")
# vosk_test.wav's reference is only approximate (see the audio README).
APPROXIMATE = {"misc/vosk_test.wav"}


def utterances(pcm: Pcm) -> list[npt.NDArray[np.float32]]:
    segmenter = Segmenter(WebRtcActivity(3), silence_ms=500, max_utterance_ms=15_000, preroll_ms=300, hangover_ms=200)
    out: list[npt.NDArray[np.float32]] = []
    current: list[Pcm] = []
    for segment in segmenter.push(np.concatenate([pcm, np.zeros(SAMPLE_RATE_HZ, np.int16)])) + segmenter.flush():
        if isinstance(segment, UtteranceAudio):
            current.append(segment.pcm)
        elif isinstance(segment, UtteranceEnd) and current:
            out.append((np.concatenate(current) / 32768).astype(np.float32))
            current = []
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=AUDIO_DIR)
    parser.add_argument("--repeats", type=int, default=1, help="decodes per utterance and mode (times only)")
    parser.add_argument("--model", default=None, help="catalogue name or path (default: the default English model)")
    parser.add_argument("--modes", default=",".join(MODES), help="final windows to run, comma-separated")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m in MODES)
    rows = [r for r in transcripts(args.audio_dir) if r.transcript and r.file not in APPROXIMATE]
    engine = create(EngineOptions(model=args.model, threads=1, extra={"workers": 1}))
    engine.decode_partial(np.zeros(SAMPLE_RATE_HZ, np.float32), "en", "")  # warm-up
    hypotheses: dict[str, list[str]] = {mode: [] for mode in modes}
    times_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    # CPU time of this process: on a shared machine it moves far less than wall time.
    cpu_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    cut = 0
    for row in rows:
        clips = utterances(load_wav(args.audio_dir / row.file))
        cut += len(clips)
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
            hypotheses[mode].append(" ".join(texts))
    engine.close()
    references = [row.transcript for row in rows]
    print(f"{engine.model}: {len(rows)} recordings, {cut} utterances, {args.repeats} decode(s) each, 1 thread\n")
    print(
        table(
            ["final window", "WER %", "decode p50 ms", "p95 ms", "max ms", "CPU ms per decode, mean"],
            [
                [
                    mode,
                    f"{wer_percent(references, hypotheses[mode]):.1f}",
                    fmt(pct(times_ms[mode], 50)),
                    fmt(pct(times_ms[mode], 95)),
                    fmt(max(times_ms[mode])),
                    fmt(sum(cpu_ms[mode]) / len(cpu_ms[mode])),
                ]
                for mode in modes
            ],
            "lrrrrr",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
