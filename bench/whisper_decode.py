"""What one Whisper decode costs: the partial, the short-window final and the full-window final.

    python bench/whisper_decode.py [--wav ../shared/audio/misc/jfk.wav] [--repeats 5]

For growing prefixes of a recording (1, 2, 4, 8 s, whole), times the engine's
partial decode (encoder window = audio + 5 s, capped tokens), its default final
decode (the same window, timestamp tokens, word timestamps) and the full-window
final (faster-whisper, 30 s window, word timestamps), on one CPU thread, and
prints p50 and max per length. This is the cost docs/engines.md quotes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.audio import AUDIO_DIR, SAMPLE_RATE_HZ, load_wav
from core.stats import pct
from core.table import fmt, table
from hushgate.engines.base import EngineOptions
from hushgate.engines.whisper import create


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--wav", type=Path, default=AUDIO_DIR / "misc" / "jfk.wav", help="16 kHz mono 16-bit WAV")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    audio = load_wav(args.wav).astype(np.float32) / 32768
    engine = create(EngineOptions(threads=1, extra={"workers": 1}))
    engine.decode_partial(audio[:SAMPLE_RATE_HZ], "en", "")  # warm-up
    whole_s = len(audio) / SAMPLE_RATE_HZ
    print(f"{args.wav.name}: {whole_s:.1f} s, {args.repeats} repeats, 1 thread\n")
    rows = []
    for seconds in [s for s in (1, 2, 4, 8) if s < whole_s] + [whole_s]:
        clip = audio[: int(seconds * SAMPLE_RATE_HZ)]
        partial_ms: list[float] = []
        final_ms: list[float] = []
        full_ms: list[float] = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            engine.decode_partial(clip, "en", "")
            partial_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            engine.decode_short(clip, "en", "", True)
            final_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            engine.decode_full(clip, "en", "", True)
            full_ms.append((time.perf_counter() - started) * 1000)
        rows.append(
            [
                f"{seconds:.1f}",
                *(cell for ms in (partial_ms, final_ms, full_ms) for cell in (fmt(pct(ms, 50)), fmt(max(ms)))),
            ]
        )
    engine.close()
    print(
        table(
            [
                "audio s",
                "partial p50 ms",
                "partial max ms",
                "final p50 ms",
                "final max ms",
                "full final p50 ms",
                "full max ms",
            ],
            rows,
            "rrrrrrr",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
