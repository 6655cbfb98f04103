"""Speaker recognition through the real server: real voices, real encoder.

Voices are LibriSpeech readers from ``../shared/audio`` (1221, 2412, 251, 1089).
No recording repeats a phrase, so the passphrase tests synthesize one with the
Piper voice (say so: a synthetic speaker, the same for every take).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import itertools
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from hushgate.engines.base import EngineOptions
from hushgate.server.settings import Settings
from hushgate.server.speakers import THRESHOLDS, SpeakerBook, calibrated, phrase_matches, threshold_for
from tests.audio_helpers import read_wav, resample
from tests.conftest import serve
from tests.wsclient import Client

pytestmark = pytest.mark.slow
LIB = "librispeech"


@pytest.fixture(scope="module")
def server(ge2e_models_dir: Path):  # noqa: ANN201
    settings = Settings(
        stt=("en=whisper",),
        translators=(),
        synthesizers=(),
        models_dir=ge2e_models_dir,
        voiceprint_key="test-sealing-key",
        enroll_needed_ms=8_000,
    )
    with serve(settings) as running:
        assert running.app.state.gateway.hub.encoder is not None, running.app.state.gateway.hub.unavailable
        yield running


def wav(audio_dir: Path, name: str) -> np.ndarray:
    return read_wav(audio_dir / LIB / f"{name}.wav")[0]


async def say(client: Client, pcm: np.ndarray, *until: str) -> list[dict]:
    """Stream an utterance plus trailing silence; collect events until each named type was seen."""
    start = len(client.received.events)
    await client.stream(np.concatenate([pcm, np.zeros(16_000, np.int16)]))
    await client.send({"type": "flush"})
    wanted = list(until)
    events: list[dict] = []
    while wanted:
        event = await client.next_event(timeout_s=60)
        events.append(event)
        if event["type"] in wanted:
            wanted.remove(event["type"])
    del start
    return events


def finals_of(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "final"]


async def speaker_of(client: Client, events: list[dict]) -> dict | None:
    """The decision on the last final's speaker: on the final, or (documented) in a later `speaker` event.

    None when the decision was `undecided`.
    """
    final = finals_of(events)[-1]
    if "speaker" in final or "undecided" in final:
        return final.get("speaker")
    while True:
        for event in events:
            if event["type"] == "speaker" and event["utterance"] == final["utterance"]:
                return event.get("speaker")
        events.append(await client.next_event(timeout_s=60))


def session_of(server, client: Client):  # noqa: ANN001, ANN201 - the server's session object
    """This client's session on the server (other tests' sessions may still be closing)."""
    session_id = client.ready["session"]
    (session,) = [s for s in server.app.state.gateway.sessions if s.id == session_id]
    return session


async def enroll(client: Client, request_id: str, label: str, pcm: np.ndarray, **extra) -> dict:  # noqa: ANN003
    await client.send({"type": "enroll", "id": request_id, "consent": True, "label": label, **extra})
    # Other events may come first (a lag notice on a busy machine): wait for the documented one.
    progress = await client.reply(request_id)
    assert progress["type"] == "enroll.progress" and progress["speech_ms"] == 0
    events = await say(client, pcm, "enrolled")
    (enrolled,) = [e for e in events if e["type"] == "enrolled"]
    assert enrolled["id"] == request_id and enrolled["label"] == label and enrolled["speech_ms"] >= 8_000
    return enrolled


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_enrolled_speakers_are_identified_and_strangers_are_guests(server, audio_dir: Path, fmt: str) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    ready = await client.start(speakers={"identify": True, "diarize": True})
    assert ready["limits"]["voiceprint_exports_survive_restart"] is True
    ana = await enroll(client, "e1", "Ana", wav(audio_dir, "1221-135766-0001"))
    ben = await enroll(client, "e2", "Ben", wav(audio_dir, "2412-153948-0000"))
    # Held-out utterances of the two enrolled readers.
    for name, expected in [("1221-135766-0002", ana), ("2412-153948-0001", ben)]:
        events = await say(client, wav(audio_dir, name), "final")
        speaker = await speaker_of(client, events)
        assert speaker is not None and speaker["voiceprint_id"] == expected["voiceprint_id"], (name, speaker)
        assert speaker["label"] == expected["label"] and speaker["score"] >= 0.5
    # A reader nobody enrolled. (Ana's and Ben's enrollment speech came before
    # their voiceprints existed, so it was diarized as guests too.)
    events = await say(client, wav(audio_dir, "251-137823-0003"), "final")
    speaker = await speaker_of(client, events)
    assert (
        speaker is not None
        and speaker["voiceprint_id"] is None
        and speaker["label"].startswith("Guest-")
        and speaker["score"] < 0.5
    )
    # The same stranger again is the same guest.
    events = await say(client, wav(audio_dir, "251-118436-0001"), "final")
    again = await speaker_of(client, events)
    assert again is not None and again["label"] == speaker["label"]
    assert (await client.finish()).close_code == 1000


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_verification_accepts_the_speaker_and_rejects_another(server, audio_dir: Path, fmt: str) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    await client.start()
    ana = await enroll(client, "e1", "Ana", wav(audio_dir, "1221-135766-0001"))
    await client.send({"type": "verify", "id": "v1", "voiceprint_id": ana["voiceprint_id"]})
    verified = [e for e in await say(client, wav(audio_dir, "1221-135766-0002"), "verified") if e["type"] == "verified"]
    assert verified[0]["decision"] == "accept" and verified[0]["score"] >= 0.5 and verified[0]["id"] == "v1"
    await client.send({"type": "verify", "id": "v2", "voiceprint_id": ana["voiceprint_id"]})
    verified = [e for e in await say(client, wav(audio_dir, "1089-134686-0000"), "verified") if e["type"] == "verified"]
    assert verified[0]["decision"] == "reject" and verified[0]["score"] < 0.5
    assert "passphrase_match" not in verified[0]
    await client.send({"type": "verify", "id": "v3", "voiceprint_id": "no-such-id"})
    error = await client.reply("v3")
    assert (error["code"], error["id"]) == ("unknown_voiceprint", "v3")
    await client.finish()


@pytest.fixture(scope="module")
def piper_phrases() -> dict[str, np.ndarray]:
    from hushgate.engines.piper import create

    voice = create(EngineOptions())
    out = {}
    for key, text in {
        "pass": "my voice is my passport verify me",
        "wrong": "the quick brown fox jumps over the lazy dog",
    }.items():
        chunks = list(voice.synthesize(text, "en_US-joe-medium"))
        out[key] = resample(np.concatenate(chunks), 22_050, 16_000)
    voice.close()
    return out


async def test_passphrase_enrollment_and_verification(server, piper_phrases) -> None:  # noqa: ANN001
    """Synthetic speaker (Piper's joe voice), one passphrase."""
    client = await Client.connect(server.ws())
    await client.start()
    phrase = "my voice is my passport verify me"
    await client.send({"type": "enroll", "id": "p1", "consent": True, "passphrase": phrase, "needed_ms": 4000})
    assert (await client.reply("p1"))["needed_ms"] == 4000
    # A take with the wrong words is reported and not counted.
    events = await say(client, piper_phrases["wrong"], "enroll.progress")
    progress = [e for e in events if e["type"] == "enroll.progress"][-1]
    assert progress["passphrase_match"] is False and progress["speech_ms"] == 0
    enrolled = None
    for _ in range(4):
        events = await say(client, piper_phrases["pass"], "enroll.progress")
        done = [e for e in events if e["type"] == "enrolled"]
        progress = [e for e in events if e["type"] == "enroll.progress"][-1]
        assert progress["passphrase_match"] is True
        if done or progress["speech_ms"] >= 4000:
            enrolled = done[0] if done else await client.next_of("enrolled")
            break
    assert enrolled is not None and enrolled["type"] == "enrolled"
    vid = enrolled["voiceprint_id"]
    await client.send({"type": "verify", "id": "ok", "voiceprint_id": vid})
    result = next(e for e in await say(client, piper_phrases["pass"], "verified") if e["type"] == "verified")
    assert (result["decision"], result["passphrase_match"]) == ("accept", True)
    await client.send({"type": "verify", "id": "bad", "voiceprint_id": vid})
    result = next(e for e in await say(client, piper_phrases["wrong"], "verified") if e["type"] == "verified")
    # Right voice, wrong words: rejected whatever the voice score.
    assert (result["decision"], result["passphrase_match"]) == ("reject", False)
    await client.finish()


async def test_export_import_in_a_new_session_and_tampering(server, audio_dir: Path) -> None:  # noqa: ANN001
    first = await Client.connect(server.ws())
    await first.start()
    ana = await enroll(first, "e1", "Ana", wav(audio_dir, "1221-135766-0001"))
    await first.send({"type": "voiceprint.export", "id": "x1", "voiceprint_id": ana["voiceprint_id"]})
    exported = await first.reply("x1")
    assert exported["type"] == "voiceprint.exported" and exported["voiceprint_id"] == ana["voiceprint_id"]
    sealed = exported["voiceprint"]
    # Sealed, not merely encoded: the label is in no readable form in the blob. (The
    # base64 text itself may spell "Ana" by chance; the decoded bytes would not
    # hold the quoted JSON string unless it were plaintext.)
    body = sealed.rsplit(".", 1)[-1]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert b'"Ana"' not in raw and b'"Ana"' not in sealed.encode()
    await first.finish()

    second = await Client.connect(server.ws(), "msgpack")
    await second.start(speakers={"identify": True, "voiceprints": [sealed]})
    imported = await second.next_of("voiceprint.imported")
    assert imported == {"type": "voiceprint.imported", "voiceprint_id": ana["voiceprint_id"], "label": "Ana"}
    events = await say(second, wav(audio_dir, "1221-135766-0002"), "final")
    speaker = await speaker_of(second, events)
    assert speaker is not None and speaker["voiceprint_id"] == ana["voiceprint_id"]
    raw = bytearray(sealed.encode())
    for position in (len(raw) // 2, len(raw) - 3):
        tampered = bytes(raw[:position]) + bytes([raw[position] ^ 0x01]) + bytes(raw[position + 1 :])
        await second.send({"type": "voiceprint.import", "id": "t", "voiceprint": tampered.decode("latin-1")})
        error = await second.reply("t")
        assert (error["type"], error["code"], error["id"]) == ("error", "unknown_voiceprint", "t")
    await second.finish()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_nothing_of_the_voice_is_kept_after_delete_or_after_the_session(
    server,
    audio_dir: Path,
    fmt: str,  # noqa: ANN001
) -> None:
    client = await Client.connect(server.ws(), fmt)
    await client.start(speakers={"identify": True})
    ana = await enroll(client, "e1", "Ana", wav(audio_dir, "1221-135766-0001"))
    ben = await enroll(client, "e2", "Ben", wav(audio_dir, "2412-153948-0000"))
    session = session_of(server, client)
    book = session.voiceprints.book
    ana_vector = book.voiceprints[ana["voiceprint_id"]].vector
    ben_vector = book.voiceprints[ben["voiceprint_id"]].vector
    session_ref = weakref.ref(session)
    del session
    await client.send({"type": "voiceprint.delete", "id": "d1", "voiceprint_id": ana["voiceprint_id"]})
    assert await client.reply("d1") == {"type": "voiceprint.deleted", "voiceprint_id": ana["voiceprint_id"], "id": "d1"}
    assert ana["voiceprint_id"] not in book.voiceprints and not ana_vector.any()
    await client.send({"type": "verify", "id": "v", "voiceprint_id": ana["voiceprint_id"]})
    assert (await client.reply("v"))["code"] == "unknown_voiceprint"
    # Identification no longer finds the deleted voice.
    events = await say(client, wav(audio_dir, "1221-135766-0002"), "final")
    speaker = await speaker_of(client, events) or {}
    assert speaker.get("voiceprint_id") != ana["voiceprint_id"]
    await client.finish()
    # After the session: the remaining voiceprint is wiped and nothing holds the session.
    assert not ben_vector.any() and not book.voiceprints and book.enrollment is None
    del book
    assert await released(session_ref)


async def test_a_dropped_connection_mid_enrollment_leaves_nothing(server, audio_dir: Path) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start(speakers={"identify": True})
    await client.send({"type": "enroll", "id": "e1", "consent": True, "needed_ms": 30_000})
    await client.stream(wav(audio_dir, "1221-135766-0001")[: 16_000 * 8])
    await client.send({"type": "flush"})  # end the utterance so its speech is counted
    sessions = server.app.state.gateway.sessions
    session = session_of(server, client)
    book = session.voiceprints.book
    # Some enrollment speech was counted: its progress event says so.
    await client.next_matching(lambda e: e["type"] == "enroll.progress" and e["speech_ms"] > 0, timeout_s=120)
    vectors = list(book.enrollment.vectors) if book.enrollment else []
    session_ref = weakref.ref(session)
    del session
    client.ws.transport.abort()
    for _ in range(100):
        if session_ref() not in sessions:
            break
        await asyncio.sleep(0.1)
    assert session_ref() not in sessions and book.enrollment is None and not book.voiceprints
    assert vectors and not any(v.any() for v in vectors)  # the partial enrollment was wiped, not just dropped
    del book
    assert await released(session_ref)


async def test_enrollment_needs_consent(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start()
    for message in ({"type": "enroll", "id": "a"}, {"type": "enroll", "id": "b", "consent": False}):
        await client.send(message)
        error = await client.reply(str(message["id"]))
        assert (error["code"], error["id"], error["fatal"]) == ("consent_required", message["id"], False)
    await client.finish()


def test_scores_are_calibrated_around_the_length_dependent_threshold() -> None:
    for speech_ms in (1_500, 3_000, 8_000):
        threshold = threshold_for(speech_ms)
        assert calibrated(threshold, speech_ms) == 0.5
        assert calibrated(threshold + 0.1, speech_ms) > 0.5 > calibrated(threshold - 0.1, speech_ms)
    assert threshold_for(1_500) < threshold_for(8_000)  # short speech is judged more leniently


def test_the_threshold_is_a_curve_through_its_points() -> None:
    (first_ms, first), *_, (last_ms, last) = THRESHOLDS
    for at_ms, threshold in THRESHOLDS:
        assert threshold_for(at_ms) == pytest.approx(threshold)
    for (a_ms, a), (b_ms, b) in itertools.pairwise(THRESHOLDS):
        assert threshold_for((a_ms + b_ms) // 2) == pytest.approx((a + b) / 2, abs=1e-3)  # straight in between
    assert threshold_for(first_ms - 500) == first and threshold_for(last_ms * 10) == last  # flat beyond the ends
    # Strangers' best cosines rise with length, so a longer utterance is never judged more leniently.
    lengths_ms = range(first_ms, last_ms + 1, 50)
    assert all(threshold_for(a) <= threshold_for(b) for a, b in itertools.pairwise(lengths_ms))


def test_phrase_matching_tolerates_small_slips() -> None:
    assert phrase_matches("My voice is my passport, verify me.", "my voice is my passport verify me")
    assert phrase_matches("my voice is my passport verify", "my voice is my passport verify me")
    assert not phrase_matches("open the pod bay doors", "my voice is my passport verify me")
    assert not phrase_matches("anything", "")


def test_a_book_holds_at_most_fifty_voiceprints() -> None:
    from hushgate.server.speakers import Voiceprint

    book = SpeakerBook()
    for i in range(50):
        book.add(Voiceprint(str(i), np.ones(4, np.float32) / 2, 1, 1000, None, None))
    with pytest.raises(OverflowError):
        book.add(Voiceprint("x", np.ones(4, np.float32) / 2, 1, 1000, None, None))


def test_an_enrollment_cannot_make_a_fifty_first_voiceprint() -> None:
    from hushgate.server.speakers import Voiceprint

    book = SpeakerBook()
    for i in range(50):
        book.add(Voiceprint(str(i), np.ones(4, np.float32) / 2, 1, 1000, None, None))
    book.begin_enrollment("e", None, None, 4000, first_utterance=0)
    with pytest.raises(OverflowError):
        book.add_enrollment_speech(np.ones(4, np.float32) / 2, 5000, "")
    assert len(book.voiceprints) == 50


def test_an_empty_sealing_key_is_no_key() -> None:
    from hushgate.server.sealing import Sealer

    assert Sealer("").persistent is False and Sealer(None).persistent is False and Sealer("k").persistent


async def released(ref: weakref.ref[object]) -> bool:
    """Whether the object goes within 10 s: the client has its close, the server's handler may still be unwinding."""
    deadline = time.monotonic() + 10
    gc.collect()
    while ref() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        gc.collect()
    return ref() is None


def test_the_guest_list_is_bounded() -> None:
    """Diarization labels each new voice a guest; a stream of ever-new voices must not grow the list forever."""
    from hushgate.server import speakers

    max_guests = getattr(speakers, "MAX_GUESTS", 32)
    book = SpeakerBook()
    rng = np.random.default_rng(12)
    labels = set()
    for _ in range(max_guests * 4):
        vector = rng.standard_normal(256).astype(np.float32)
        identity = book.identify(vector / np.linalg.norm(vector), 5000, diarize=True)
        if identity is not None:
            labels.add(identity.label)
    assert len(labels) <= max_guests


def test_waiting_verifications_are_bounded() -> None:
    from hushgate.server.speakers import MAX_VERIFICATIONS

    book = SpeakerBook()
    for i in range(MAX_VERIFICATIONS):
        book.queue_verification(f"v{i}", "vp", first_utterance=0)
    with pytest.raises(OverflowError):
        book.queue_verification("one-too-many", "vp", first_utterance=0)
    assert len(book.verifications) == MAX_VERIFICATIONS
