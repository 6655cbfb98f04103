"""The JSON Schema of protocol v1, made from the wire types themselves.

``python -m hushgate.wire.schema > src/hushgate/web/protocol.schema.json``

The schema describes the JSON encoding; msgpack frames are the same maps (with
``bin`` where the schema says base64: audio, which JSON sessions send as bare
binary frames instead). Limits (string lengths, ranges) are the parse limits of
the server. ``$defs.ClientMessage`` and ``$defs.ServerEvent`` are the two
tagged unions, discriminated by ``type``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from hushgate.wire.codes import PROTOCOL_VERSION, CloseCode, ErrorCode
from hushgate.wire.events import ServerEvent
from hushgate.wire.messages import ClientMessage

ROOTS = {"ClientMessage": ClientMessage, "ServerEvent": ServerEvent, "ErrorCode": ErrorCode, "CloseCode": CloseCode}


def protocol_schema() -> dict[str, Any]:
    roots, components = msgspec.json.schema_components(tuple(ROOTS.values()), ref_template="#/$defs/{name}")
    defs = dict(components)
    for name, root in zip(ROOTS, roots, strict=True):
        defs.setdefault(name, root)
    # No `$schema`/`$id` URLs: the web folder refers to no other host (tests/test_web_static.py).
    return {
        "title": f"hushgate wire protocol v{PROTOCOL_VERSION}",
        "description": "JSON Schema (draft 2020-12). A frame is a ClientMessage (client → server) "
        "or a ServerEvent (server → client).",
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerEvent"}],
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(protocol_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
