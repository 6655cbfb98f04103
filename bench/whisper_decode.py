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
import statistics
import time
import wave
from pathlib import Path

import numpy as np

from hushgate.engines.base import EngineOptions
from hushgate.engines.whisper import create

DEFAULT_WAV = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "misc" / "jfk.wav"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, default=DEFAULT_WAV, help="16 kHz mono 16-bit WAV")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with wave.open(str(args.wav)) as wav:
        if wav.getframerate() != 16_000 or wav.getnchannels() != 1:
            raise SystemExit("needs a 16 kHz mono WAV")
        audio = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    engine = create(EngineOptions(threads=1, extra={"workers": 1}))
    engine.decode_partial(audio[:16_000], "en", "")  # warm-up
    whole_s = len(audio) / 16_000
    print(f"{args.wav.name}: {whole_s:.1f} s, {args.repeats} repeats, 1 thread\n")
    print("| audio s | partial p50 ms | partial max ms | final p50 ms | final max ms | full final p50 ms | full max ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for seconds in [s for s in (1, 2, 4, 8) if s < whole_s] + [whole_s]:
        clip = audio[: int(seconds * 16_000)]
        partial_ms, final_ms, full_ms = [], [], []
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
        print(f"| {seconds:.1f} | {statistics.median(partial_ms):.0f} | {max(partial_ms):.0f} | "
              f"{statistics.median(final_ms):.0f} | {max(final_ms):.0f} | "
              f"{statistics.median(full_ms):.0f} | {max(full_ms):.0f} |")
    engine.close()


if __name__ == "__main__":
    main()
