"""The protocol's JSON Schema, the SDK's TypeScript declarations and the npm manifest cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from hushgate.wire import ClientMessage, ServerEvent, to_wire
from hushgate.wire.schema import protocol_schema, render
from hushgate.wire.typescript import declarations

WEB = Path(__file__).resolve().parents[1] / "src" / "hushgate" / "web"
REGENERATE = (
    "python -m hushgate.wire.schema > src/hushgate/web/protocol.schema.json && "
    "python -m hushgate.wire.typescript src/hushgate/web/sdk-api.d.ts.in > src/hushgate/web/sdk.d.ts"
)


def test_the_checked_in_schema_is_the_one_the_types_make() -> None:
    assert (WEB / "protocol.schema.json").read_text(encoding="utf-8") == render(), f"regenerate: {REGENERATE}"


def test_the_checked_in_typescript_is_the_one_the_schema_makes() -> None:
    expected = declarations(protocol_schema()) + "\n" + (WEB / "sdk-api.d.ts.in").read_text(encoding="utf-8")
    assert (WEB / "sdk.d.ts").read_text(encoding="utf-8") == expected, f"regenerate: {REGENERATE}"


def test_typescript_names_every_message_and_event() -> None:
    text = (WEB / "sdk.d.ts").read_text(encoding="utf-8")
    for tag, ts in [
        ("start", "StartMessage"),
        ("voiceprint.delete", "VoiceprintDeleteMessage"),
        ("final", "FinalEvent"),
        ("error", "ErrorEvent"),
        ("speaker", "SpeakerEvent"),
        ("tts.audio", "TtsAudioEvent"),
    ]:
        assert f"export interface {ts} {{\n  type: {json.dumps(tag)};" in text, ts
    assert "export type ServerEvent = ReadyEvent | " in text and "export type ClientMessage = StartMessage | " in text


def test_the_schema_accepts_what_the_codecs_send() -> None:
    # msgspec checks values against the same types the schema was made from; a
    # round trip of a JSON frame through the schema's own types must be lossless.
    schema = protocol_schema()
    assert schema["$defs"]["ServerEvent"]["discriminator"]["propertyName"] == "type"
    event_tags = set(schema["$defs"]["ServerEvent"]["discriminator"]["mapping"])
    message_tags = set(schema["$defs"]["ClientMessage"]["discriminator"]["mapping"])
    assert {"ready", "final", "error", "ended", "tts.audio"} <= event_tags
    assert {"start", "audio", "stop", "voiceprint.import"} <= message_tags
    frame = {
        "type": "final",
        "utterance": 1,
        "text": "a",
        "t0_ms": 0,
        "t1_ms": 9,
        "words": [{"w": "a", "t0_ms": 0, "t1_ms": 9, "conf": 0.5}],
    }
    assert to_wire(msgspec.json.decode(json.dumps(frame), type=ServerEvent)) == frame
    start = {"type": "start", "audio": {"sample_rate": 16000}}
    assert to_wire(msgspec.json.decode(json.dumps(start), type=ClientMessage))["audio"] == {"sample_rate": 16000}


def test_package_json_names_files_that_exist() -> None:
    manifest = json.loads((WEB / "package.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "@hushgate/sdk" and manifest["type"] == "module"
    for name in manifest["files"]:
        assert (WEB / name).is_file(), name
    targets = [manifest["main"], manifest["types"]]
    for entry in manifest["exports"].values():
        targets += list(entry.values()) if isinstance(entry, dict) else [entry]
    for target in targets:
        assert (WEB / target).is_file(), target
        assert target.removeprefix("./") in manifest["files"], f"{target} is exported but not published"
