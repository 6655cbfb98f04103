"""The gateway's address and credentials, and what to do with a connection: sessions and one-shot requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from hushgate.client.resume import RESUMABLE_CLOSE_CODES, RESUME_ATTEMPTS, RESUME_FIRST_WAIT_S, AudioTail, Timeline
from hushgate.client.session import GatewayError, PcmChunk, Session
from hushgate.client.streaming import Chunks, Pump, Resumed
from hushgate.wire import Error, Event, Format, Translation, TtsAudio, TtsEnd, TtsStart

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEFAULT_PATH = "/v1/stream"


def _stream_url(url: str, fmt: Format, token: str | None) -> str:
    """The /v1/stream URL with ``format`` (and ``token``) set; a bare server address gets the default path."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the gateway URL must start with ws://, wss://, http:// or https://, not {url!r}")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("format", "token")]
    query.append(("format", fmt))
    if token is not None:
        query.append(("token", token))
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


# Client ---------------------------------------------------------------------------


class Client:
    """Where the gateway is and how to authenticate; opens one connection per session.

    ``url`` is the stream URL (``ws://host:8000/v1/stream``) or just the server
    (``ws://host:8000``, ``http://host:8000``). ``api_key`` goes in an
    ``Authorization: Bearer`` header; ``token`` (a browser token from
    ``POST /v1/tokens``) in the query, for when all you have is a token.
    ``format`` picks the encoding; both give exactly the same events.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        format: Format = "json",
        open_timeout_s: float = 30.0,
    ) -> None:  # noqa: A002 - the protocol's name
        if format not in ("json", "msgpack"):
            raise ValueError(f"format must be 'json' or 'msgpack', not {format!r}")
        self.url = _stream_url(url, format, token)
        self.format: Format = format
        self._api_key = api_key
        self._open_timeout_s = open_timeout_s

    def __repr__(self) -> str:
        # The URL may hold a token; never print it.
        return f"Client({urlunsplit(urlsplit(self.url)._replace(query=''))!r}, format={self.format!r})"

    async def _connect(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
        try:
            return await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self._open_timeout_s,
                # TTS chunks are at most 500 ms; audio does not compress, so no deflate.
                max_size=16 << 20,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message, code = f"the server answered HTTP {status}", "http_error"
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                body = json.loads(exc.response.body or b"")
                message = str(body.get("error") or message)
                code = str(body.get("code") or code)
            if status in (401, 403):
                code = "unauthorized"
            raise GatewayError(code, message, http_status=status) from exc
        except InvalidURI as exc:
            raise ValueError(str(exc)) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            where = urlunsplit(urlsplit(self.url)._replace(query=""))
            raise GatewayError("unreachable", f"cannot connect to {where}: {exc or type(exc).__name__}") from exc

    @contextlib.asynccontextmanager
    async def session(
        self,
        rate: int = 16_000,
        *,
        language: str | None = None,
        partials: bool | None = None,
        words: bool | None = None,
        vad: Mapping[str, Any] | None = None,
        translate: Mapping[str, Any] | Iterable[str] | str | None = None,
        speak: Mapping[str, Any] | None = None,
        speakers: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> AsyncIterator[Session]:
        """Open a session: connect, send ``start``, wait for ``ready``.

        The options are the ``start`` fields of the protocol (``None``: the server's
        default); ``translate`` may also be a target or a list of targets. Unknown
        keywords are sent as they are, for options newer than this SDK. Leaving the
        block closes the connection: call :meth:`Session.finish` first to get every
        pending result.
        """
        if isinstance(translate, str):
            translate = {"targets": [translate]}
        elif translate is not None and not isinstance(translate, Mapping):
            translate = {"targets": list(translate)}
        start = {
            "type": "start",
            "audio": {"sample_rate": rate},
            "language": language,
            "partials": partials,
            "words": words,
            "vad": vad,
            "translate": translate,
            "speak": speak,
            "speakers": speakers,
            **extra,
        }
        ws = await self._connect()
        session = Session(ws, self.format)
        try:
            await session._open(start, self._open_timeout_s)
            yield session
        finally:
            await session.close()

    async def stream(
        self,
        pcm: Iterable[PcmChunk] | AsyncIterable[PcmChunk],
        rate: int = 16_000,
        *,
        resume: bool = True,
        **start: Any,
    ) -> AsyncIterator[Event | Resumed]:
        """Send every chunk of ``pcm`` while yielding the events, then stop; ``Ready`` comes first, ``Ended`` last.

        Sending and receiving run concurrently, so events arrive while a long file
        is still being sent; the sending slows to what the server can take. Pace an
        async iterable yourself for real-time streaming. ``start`` takes the options
        of :meth:`session`.

        With ``resume`` (the default), a server that drains (``ended`` with reason
        ``shutdown``) or vanishes mid-stream does not end the stream: a new session
        is opened (behind a load balancer, on another replica), the audio no final
        has covered yet is sent again, and a :class:`Resumed` event marks the seam.
        Times and utterance numbers continue as one stream (see ``resume.py``).
        """
        source = Chunks(pcm)
        tail = AudioTail(rate)
        timeline = Timeline()
        replay = b""
        first = True
        try:
            while True:
                async with self._resumable_session(rate, retry=not first, **start) as s:
                    if first:
                        yield s.ready
                        first = False
                    else:
                        yield Resumed(offset_ms=timeline.offset_ms, resent_ms=len(replay) * 500 // rate)
                    pump = Pump(s, source, tail, replay, resume=resume)
                    async for event in pump.events():
                        timeline.seen(event)
                        yield timeline.shift(event)
                    if pump.settled_ms is None:
                        return
                timeline.advance(pump.settled_ms, pump.utterances)
                replay = pump.replay
        finally:
            await source.aclose()

    @contextlib.asynccontextmanager
    async def _resumable_session(self, rate: int, *, retry: bool, **start: Any) -> AsyncIterator[Session]:
        """:meth:`session`; when resuming, retried with growing waits while replicas refuse or are unreachable."""
        wait_s = RESUME_FIRST_WAIT_S
        for attempt in range(RESUME_ATTEMPTS if retry else 1):
            try:
                context = self.session(rate, **start)
                session = await context.__aenter__()
            except GatewayError as exc:
                retryable = (
                    exc.code in ("unreachable", "overloaded", "engine_unavailable")
                    or (exc.close_code in RESUMABLE_CLOSE_CODES)
                    or exc.http_status in (502, 503, 504)
                )
                if not retry or not retryable or attempt == RESUME_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(wait_s)
                wait_s *= 2
                continue
            try:
                yield session
            finally:
                await context.__aexit__(None, None, None)
            return

    async def speak(
        self, text: str, voice: str | None = None, sample_rate: int | None = None, *, language: str | None = None
    ) -> tuple[npt.NDArray[np.int16], int]:
        """Synthesize ``text`` over a short session: (int16 mono samples, their sample rate).

        Needs numpy (``pip install hushgate-client[numpy]``); :meth:`speak_pcm` does not.
        """
        import numpy as np

        pcm, rate = await self.speak_pcm(text, voice, sample_rate, language=language)
        return np.frombuffer(pcm, dtype="<i2").astype(np.int16), rate

    async def speak_pcm(
        self, text: str, voice: str | None = None, sample_rate: int | None = None, *, language: str | None = None
    ) -> tuple[bytes, int]:
        """Synthesize ``text`` over a short session: (s16le mono PCM, its sample rate)."""
        speak = {"sample_rate": sample_rate} if sample_rate is not None else None
        async with self.session(16_000, partials=False, speak=speak) as s:
            request_id = await s.speak(text, voice=voice, language=language)
            chunks: list[bytes] = []
            rate: int | None = None
            async for event in s.events():
                if isinstance(event, Error) and event.id == request_id:
                    raise GatewayError(event.code, event.message)
                if getattr(event, "id", None) != request_id:
                    continue
                if isinstance(event, TtsStart):
                    rate = event.sample_rate
                elif isinstance(event, TtsAudio):
                    chunks.append(event.pcm)
                elif isinstance(event, TtsEnd):
                    break
            else:
                raise GatewayError("closed", "the session ended before the synthesis did", s.close_code)
            await s.finish(timeout_s=30.0)
        if rate is None:
            raise GatewayError("bad_event", "`tts.end` without `tts.start`")
        return b"".join(chunks), rate

    async def translate(self, text: str, target: str, source: str | None = None) -> str:
        """Translate ``text`` over a short session; raises GatewayError (e.g. ``engine_unavailable``) if it cannot."""
        async with self.session(16_000, partials=False) as s:
            request_id = await s.translate(text, target, source=source)
            async for event in s.events():
                if isinstance(event, Error) and event.id == request_id:
                    raise GatewayError(event.code, event.message)
                if isinstance(event, Translation) and event.id == request_id:
                    await s.finish(timeout_s=30.0)
                    return event.text
        raise GatewayError("closed", "the session ended before the translation came")
