"""Speaker verification and identification benchmark, run through the real WebSocket.

Everything goes through ``/v1/stream`` exactly as a client would use it; the
bench never calls the encoder itself. It works in three steps:

1. **Enrollment.** For every speaker with more than ``--enroll-utterances`` (N)
   recordings, the N longest are enrolled in a session of their own: ``enroll``
   with ``consent: true`` and ``needed_ms`` set to the speech those recordings
   hold, then the recordings, each followed by ``flush``; once ``enrolled``
   arrives the voiceprint is exported (sealed). ``needed_ms`` is the total the
   server itself counts (``final.t1_ms - final.t0_ms`` of every utterance of at
   least 1 s), measured beforehand in a probe session that streams the same
   recordings the same way: the server counts speech from the detected onset
   minus the pre-roll, so a recording's file length can overstate it and an
   enrollment asking for the file length would then never complete. If the N
   recordings hold less than the 4 s an enrollment needs, the next longest are
   added while at least one recording is left for testing; a speaker for whom
   that is not enough is not enrolled and counts as unseen.
2. **Scoring.** Every recording that was not used for enrollment is a test
   utterance; speakers with too few recordings (and those named in
   ``--holdout``) are *unseen*: never enrolled, only tested. For each test
   utterance and each ``--lengths`` entry L the bench cuts the first L seconds
   from the speech onset (found with a simple energy detector; ``full`` streams
   the whole file, and an utterance with less than L seconds after its onset is
   skipped for that length). Each cut runs in a fresh session that imports every
   sealed voiceprint in ``start.speakers.voiceprints`` with ``identify`` on,
   sends one ``verify`` per voiceprint before any audio (all pending
   verifications are answered by the next utterance), streams the cut, sends
   ``flush`` and ``stop``. That yields one ``verified`` score per (utterance,
   voiceprint) pair — target trials when the voiceprint is the speaker's own,
   impostor trials otherwise — and the server's open-set identification in
   ``final.speaker`` (or the follow-up ``speaker`` event). ``vad.silence_ms``
   is 5000 so that a cut stays one utterance.
3. **Figures**, per cut length, and again per shipped threshold band of the
   speech the server counted (the band decides which threshold applied):

   * EER, computed on cosines: ``verified.score`` is the shipped logistic map of
     the cosine, ``1 / (1 + exp(-SCORE_SLOPE * (cos - threshold(speech_ms))))``,
     so the bench inverts it with the constants of ``src/hushgate/server/speakers.py`` (the
     score is rounded to 4 decimals, so cosines more than ~0.45 below the
     threshold come out as a bound). Cosines are comparable across speech
     lengths; calibrated scores are not, since the threshold depends on the band.
     The EER cosine is the threshold at which the false-accept and false-reject
     rates cross; when the two sets do not overlap it is the midpoint of the gap
     between the highest impostor and the lowest target cosine;
   * closed-set top-1 identification accuracy: the enrolled voiceprint with
     the highest cosine is the speaker's own (test utterances of enrolled
     speakers only);
   * open-set false-accept and false-reject rates at the shipped threshold: the
     share of impostor trials the server answered ``accept`` (score >= 0.5) and
     of target trials it answered ``reject``;
   * unseen FA: test utterances of never-enrolled speakers that were accepted
     as any enrolled voiceprint (what ``identify`` would name them);
   * "no decision": cuts the server gave no decision for (``undecided``, e.g.
     ``too_short`` under 1 s of counted speech).

   The tables are printed for all speakers and, when synthetic ones are present,
   for real-only and synthetic-only trials as well, plus one of synthetic cuts
   against real voiceprints (how often a TTS voice passes as an enrolled person).

Synthetic speakers (``--synth-piper N``, ``--synth-espeak N``): N voices each
read ``--synth-utterances`` different English passages, synthesised into a
temporary directory (``--synth-dir`` keeps them) at 16 kHz. Piper has one voice
installed here (``en_US-joe-medium``), so it gives at most one speaker; espeak-ng
gives one per voice in ``ESPEAK_VOICES`` (accents and variants). They are
labelled ``synthetic`` in the output.

``--what-if 2000:0.67,4000:0.70,inf:0.78`` also counts, per band, the false
accepts and rejects the same trials would give at other cosine thresholds, one per
band of speech (a step rule: upper bound in ms, then the cosine; the shipped ``THRESHOLDS``
in ``src/hushgate/server/speakers.py`` are instead points joined by straight lines), from
the recovered cosines; ``--json FILE`` keeps every trial.

Usage::

    python bench/speakers.py --spawn --tsv /work/shared/audio/transcripts.tsv --enroll-utterances 1
    python bench/speakers.py --spawn --audio /work/shared/audio --synth-piper 1 --synth-espeak 6
    python bench/speakers.py --url ws://127.0.0.1:8000/v1/stream --audio my-recordings/

``--spawn`` starts ``hushgate serve`` on a free loopback port with
``HUSHGATE_MODELS_DIR`` pointing at ``--models-dir`` (the GE2E weights are
pulled there if missing) and no translators or synthesizers, and stops it at the
end. This is a measuring tool, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core.audio import AUDIO_DIR
from core.cli import add_server_options
from core.server import SpawnedServer
from core.speaker_eval import BANDS, Bands, Group, Test, band_of, everyone, figures, is_real, is_synthetic
from core.speaker_material import (
    BenchError,
    Recording,
    Speaker,
    cut,
    from_dir,
    from_tsv,
    group_speakers,
    note,
    synth_espeak,
    synth_piper,
)
from core.speaker_sessions import Gateway, prepare, score
from core.speaker_tables import cosine_table, main_table, speakers_table, what_if_table

ENCODER_MODEL = "resemblyzer-ge2e"


def ensure_encoder(models_dir: Path) -> None:
    from hushgate.models.pull import pull_model

    path = pull_model(ENCODER_MODEL, models_dir=models_dir, progress=False)
    note(f"speaker encoder weights: {path}")


# Driver ---------------------------------------------------------------------------------


def parse_lengths(text: str) -> list[str]:
    lengths = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part != "full":
            value = float(part)
            if value <= 0:
                raise ValueError(part)
            part = f"{value:g}"
        lengths.append(part)
    if not lengths:
        raise ValueError(text)
    return lengths


def parse_bands(text: str) -> Bands:
    bands = []
    for part in text.split(","):
        upper, _, cosine = part.strip().partition(":")
        bands.append((10**9 if upper.strip() == "inf" else int(upper), float(cosine)))
    uppers = [u for u, _ in bands]
    if not bands or uppers != sorted(set(uppers)) or uppers[-1] != 10**9:
        raise ValueError(text)
    return tuple(bands)


def length_seconds(length: str) -> float | None:
    return None if length == "full" else float(length)


async def run(
    args: argparse.Namespace, url: str, recordings: list[Recording]
) -> tuple[list[Speaker], list[Test], list[tuple[Speaker, str]]]:
    gateway = Gateway(url, args.token, args.concurrency)
    speakers = group_speakers(recordings)
    note(f"{len(recordings)} recordings of {len(speakers)} speakers; enrolling ...")
    await asyncio.gather(*(prepare(gateway, s, args.enroll_utterances, set(args.holdout)) for s in speakers))
    enrolled = [s for s in speakers if s.enrolled]
    if not enrolled:
        raise BenchError("no speaker could be enrolled")
    note(f"enrolled {len(enrolled)}: {', '.join(s.name for s in enrolled)}; scoring ...")
    tests: list[Test] = []
    jobs = []
    skipped: list[tuple[Speaker, str]] = []  # (speaker, length) of recordings too short for a length
    for s in speakers:
        used = {r.name for r in s.enrolled_from}
        for recording in s.recordings:
            if recording.name in used:
                continue
            for length in args.lengths:
                pcm = cut(recording.pcm, length_seconds(length))
                if pcm is None:
                    skipped.append((s, length))
                    continue
                test = Test(recording, s, length)
                tests.append(test)
                jobs.append(score(gateway, test, pcm, enrolled))
    await asyncio.gather(*jobs)
    return speakers, tests, skipped


def report(
    args: argparse.Namespace, url: str, speakers: list[Speaker], tests: list[Test], skipped: list[tuple[Speaker, str]]
) -> None:
    groups = [Group("all speakers", everyone, everyone)]
    if any(s.synthetic for s in speakers):
        groups += [
            Group("real speakers only", is_real, is_real),
            Group("synthetic speakers only", is_synthetic, is_synthetic),
        ]
    source = f"--tsv {args.tsv}" if args.tsv else f"--audio {args.audio}"
    print(
        f"\nspeaker bench: {url} {source} enroll_utterances={args.enroll_utterances} lengths={','.join(args.lengths)}\n"
    )
    print(speakers_table(speakers, tests))
    for group in groups:
        print(f"\n### {group.title}: by cut length\n")
        rows = figures(tests, args.lengths, lambda t: t.length, group, skipped)
        print(main_table(rows))
        print()
        print(cosine_table(rows))
        print(f"\n### {group.title}: by the shipped threshold band of the counted speech\n")
        print(cosine_table(figures(tests, BANDS, lambda t: band_of(t.speech_ms), group), "speech band"))
    cross = Group("synthetic cuts against real voiceprints", is_synthetic, is_real)
    if any(s.synthetic for s in speakers) and any(not s.synthetic and s.enrolled for s in speakers):
        groups.append(cross)
        print(f"\n### {cross.title} (all impostor trials)\n")
        print(cosine_table(figures(tests, args.lengths, lambda t: t.length, cross)))
    if args.what_if:
        bands = ", ".join(f"< {u} ms: {c:.2f}" if u < 10**9 else f"above: {c:.2f}" for u, c in args.what_if)
        for group in groups:
            print(f"\n### {group.title}: what if the thresholds were {bands}\n")
            print(what_if_table(tests, group, args.what_if))
    print(
        "\nTrials: one per (test cut, enrolled voiceprint). EER, EER cosine and the cosine columns come from "
        "cosines recovered from `verified.score`; FA/FR are the server's own accept/reject (score >= 0.5); top-1 "
        "is closed-set identification of enrolled speakers' cuts; unseen FA counts never-enrolled speakers' cuts "
        "accepted as someone; 'too short': recordings with less speech after their onset than the length; "
        "separation gap: highest impostor – lowest target cosine when they do not overlap."
    )
    mismatched = [
        t
        for t in tests
        if t.undecided is None and t.trials and (t.identified is not None) != any(tr.accepted for tr in t.trials)
    ]
    if mismatched:
        note(f"{len(mismatched)} cut(s) where `identify` and `verify` disagreed about any match")


def dump(path: Path, speakers: list[Speaker], tests: list[Test]) -> None:
    payload = {
        "speakers": [
            {
                "name": s.name,
                "kind": s.kind,
                "enrolled": s.enrolled,
                "enrolled_from": [r.name for r in s.enrolled_from],
                "enroll_speech_ms": s.enroll_speech_ms,
                "note": s.note,
            }
            for s in speakers
        ],
        "tests": [
            {
                "recording": t.recording.name,
                "speaker": t.speaker.name,
                "length": t.length,
                "speech_ms": t.speech_ms,
                "undecided": t.undecided,
                "identified": t.identified,
                "trials": [
                    {
                        "voiceprint": tr.voiceprint.name,
                        "score": tr.score,
                        "cosine": round(tr.cosine, 4),
                        "accepted": tr.accepted,
                    }
                    for tr in t.trials
                ],
            }
            for t in tests
        ],
    }
    path.write_text(json.dumps(payload, indent=1))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from hushgate.models.locate import default_models_dir

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_server_options(parser, spawn_help="start `hushgate serve` on a free port")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--audio", type=Path, help="folder of <speaker>-*.wav files (searched recursively)")
    source.add_argument("--tsv", type=Path, help="TSV of file<TAB>speaker rows, paths relative to the TSV")
    parser.add_argument("--enroll-utterances", type=int, default=1, help="recordings per enrollment (N)")
    parser.add_argument("--lengths", default="1,2,4,full", help="test cut lengths in seconds, or `full`")
    parser.add_argument("--holdout", default="", help="comma-separated speakers never to enroll (tested as unseen)")
    parser.add_argument("--synth-piper", type=int, default=0, metavar="N", help="synthetic speakers from Piper")
    parser.add_argument("--synth-espeak", type=int, default=0, metavar="N", help="synthetic speakers from espeak-ng")
    parser.add_argument("--synth-utterances", type=int, default=4, help="utterances per synthetic speaker")
    parser.add_argument("--synth-dir", type=Path, help="keep the synthetic WAVs here (default: a temp dir)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=default_models_dir(),
        help="with --spawn: models directory holding the GE2E weights (pulled if missing)",
    )
    parser.add_argument("--token", help="API key or token for a server that wants one (with --url)")
    parser.add_argument("--concurrency", type=int, default=4, help="sessions at once")
    parser.add_argument("--json", type=Path, help="write every trial here")
    parser.add_argument(
        "--what-if",
        metavar="BANDS",
        help="also count FA/FR at other cosine thresholds, one per band of speech, as "
        "UPPER_MS:COSINE,...,inf:COSINE, e.g. 2000:0.67,4000:0.70,inf:0.78",
    )
    args = parser.parse_args(argv)
    if args.audio is None and args.tsv is None:
        args.audio = AUDIO_DIR
    try:
        args.lengths = parse_lengths(args.lengths)
    except ValueError:
        parser.error("--lengths takes positive seconds or `full`, comma-separated, e.g. 1,2,4,full")
    args.holdout = [h.strip() for h in args.holdout.split(",") if h.strip()]
    if args.what_if:
        try:
            args.what_if = parse_bands(args.what_if)
        except ValueError:
            parser.error(
                "--what-if takes UPPER_MS:COSINE pairs with rising bounds, the last `inf`, "
                "e.g. 2000:0.67,4000:0.70,inf:0.78"
            )
    if args.enroll_utterances < 1 or args.concurrency < 1:
        parser.error("--enroll-utterances and --concurrency must be at least 1")
    if (args.synth_piper or args.synth_espeak) and args.synth_utterances <= args.enroll_utterances:
        parser.error("--synth-utterances must exceed --enroll-utterances (some must be left to test)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    recordings = from_tsv(args.tsv) if args.tsv else from_dir(args.audio)
    server: SpawnedServer | None = None
    with tempfile.TemporaryDirectory(prefix="speaker-bench-") as tmp:
        synth_dir = args.synth_dir or Path(tmp)
        synth_dir.mkdir(parents=True, exist_ok=True)
        if args.synth_piper:
            recordings += synth_piper(args.synth_piper, args.synth_utterances, synth_dir, args.models_dir)
        if args.synth_espeak:
            recordings += synth_espeak(args.synth_espeak, args.synth_utterances, synth_dir)
        url = args.url
        try:
            if args.spawn:
                ensure_encoder(args.models_dir)
                log_path = args.server_log or Path(tmp) / "server.log"
                server = SpawnedServer(
                    shlex.split(args.serve_args),
                    {
                        "HUSHGATE_MODELS_DIR": str(args.models_dir),
                        "HUSHGATE_TRANSLATORS": "",
                        "HUSHGATE_SYNTHESIZERS": "",
                    },
                    log_path,
                )
                server.start()
                url = server.url
            speakers, tests, skipped = asyncio.run(run(args, url, recordings))
        except BenchError as exc:
            print(f"speaker bench failed: {exc}", file=sys.stderr)
            if server is not None:
                print(server.log_tail(), file=sys.stderr)
            return 1
        finally:
            if server is not None:
                server.stop()
    report(args, url, speakers, tests, skipped)
    if args.json:
        dump(args.json, speakers, tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
