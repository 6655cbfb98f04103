"""What the protocol tests share: both codecs, and client/server frames built or read without them."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from hushgate.wire.codec import JsonCodec, MsgpackCodec

CODECS = [JsonCodec(), MsgpackCodec(max_frame_bytes=1 << 20)]


def encode_client(codec: Any, obj: dict[str, Any]) -> str | bytes:
    if isinstance(codec, JsonCodec):
        return json.dumps(obj)
    return msgpack.packb(obj, use_bin_type=True)


def decode_server(codec: Any, frame: str | bytes) -> Any:
    if isinstance(codec, JsonCodec):
        return json.loads(frame) if isinstance(frame, str) else frame
    return msgpack.unpackb(frame, raw=False)
