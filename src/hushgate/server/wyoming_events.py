"""Reading Wyoming events with bounds, and the error a client is told about.

The ``wyoming`` library's own reader trusts the header's lengths; this one caps
the header line, the data and the payload, so a client cannot make the server
buffer more than one audio frame, and turns a malformed header into a
`ClientError` the connection reports as a Wyoming ``error`` event.
"""

from __future__ import annotations

import asyncio
import json

from wyoming.event import Event

HEADER_LIMIT_BYTES = 64 * 1024
DATA_LIMIT_BYTES = 64 * 1024


class ClientError(Exception):
    """The client sent something the server cannot use; told to it as a Wyoming `error`."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.code = code


async def read_event(reader: asyncio.StreamReader, max_payload_bytes: int) -> Event | None:
    try:
        line = await reader.readline()
    except (asyncio.LimitOverrunError, ValueError):
        raise ClientError(f"event header longer than {HEADER_LIMIT_BYTES} bytes", "too-large") from None
    if not line:
        return None
    try:
        header = json.loads(line)
        kind = header["type"]
        data = header.get("data") or {}
        data_length = int(header.get("data_length") or 0)
        payload_length = int(header.get("payload_length") or 0)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ClientError("an event header is not a JSON object with a type", "bad-event") from None
    if not isinstance(kind, str) or not isinstance(data, dict) or data_length < 0 or payload_length < 0:
        raise ClientError("an event header is not a JSON object with a type", "bad-event")
    if data_length > DATA_LIMIT_BYTES or payload_length > max_payload_bytes:
        raise ClientError(f"event data over {DATA_LIMIT_BYTES} or payload over {max_payload_bytes} bytes", "too-large")
    if data_length:
        try:
            extra = json.loads(await reader.readexactly(data_length))
        except ValueError:
            raise ClientError("event data is not JSON", "bad-event") from None
        if isinstance(extra, dict):
            data.update(extra)
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=kind, data=data, payload=payload)
