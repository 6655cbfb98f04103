"""Python SDK for the hushgate speech gateway (wire protocol v1, see docs/protocol.md).

Three ways in, from the most convenient to the most flexible::

    client = Client("ws://127.0.0.1:8000", api_key="sgw_...")

    # one-shot requests
    text = await client.translate("good morning", "es")
    pcm, rate = await client.speak("Your table is ready.")

    # a file or any iterable of PCM chunks: events while it is sent
    async for event in client.stream(chunks, 16_000, translate=["es"]):
        if isinstance(event, Final):
            print(event.text)

    # a session you drive yourself
    async with client.session(16_000, language="en") as s:
        await s.send_audio(pcm)
        await s.stop()
        async for event in s.events():
            ...

Every server event arrives as the wire protocol's own frozen struct (the same
types the server sends, from :mod:`hushgate.wire`); a few have SDK-friendly
names here (``ServerError`` is the ``error`` event, ``SpeakerUpdate`` the
``speaker`` event, ``Word`` a timed word). Event types this SDK does not know
yet become :class:`UnknownEvent` and unknown fields are ignored, so an older
client keeps working against a newer server, as the protocol's compatibility
rule intends.

A fatal ``error`` event, an abnormal close, a refused handshake or an
unreachable server raise :class:`GatewayError`; non-fatal errors are ordinary
:class:`ServerError` events, because the session goes on after them.

numpy is optional (``pip install hushgate-client[numpy]``): it is needed only
to send or receive audio as arrays. :mod:`hushgate.client.sync` wraps the
one-shot calls for code that does not run an event loop.
"""

from hushgate.client.api import DEFAULT_PATH, Client
from hushgate.client.session import GatewayError, PcmChunk, Session
from hushgate.client.streaming import Resumed
from hushgate.wire import (
    AudioFormat,
    Ended,
    EngineInfo,
    Enrolled,
    EnrollProgress,
    Event,
    EventParseError,
    Final,
    Format,
    Partial,
    Pong,
    Ready,
    Speaker,
    SpeechStarted,
    Translation,
    TtsAudio,
    TtsEnd,
    TtsStart,
    UnknownEvent,
    Verified,
    VoiceprintDeleted,
    VoiceprintExported,
    VoiceprintImported,
    parse_event,
)
from hushgate.wire import Error as ServerError
from hushgate.wire import SpeakerEvent as SpeakerUpdate
from hushgate.wire import WordTiming as Word

__all__ = [
    "DEFAULT_PATH",
    "AudioFormat",
    "Client",
    "Ended",
    "EngineInfo",
    "EnrollProgress",
    "Enrolled",
    "Event",
    "EventParseError",
    "Final",
    "Format",
    "GatewayError",
    "Partial",
    "PcmChunk",
    "Pong",
    "Ready",
    "Resumed",
    "ServerError",
    "Session",
    "Speaker",
    "SpeakerUpdate",
    "SpeechStarted",
    "Translation",
    "TtsAudio",
    "TtsEnd",
    "TtsStart",
    "UnknownEvent",
    "Verified",
    "VoiceprintDeleted",
    "VoiceprintExported",
    "VoiceprintImported",
    "Word",
    "parse_event",
]
