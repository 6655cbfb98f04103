"""Request bodies, capped before they are read, and multipart forms parsed in memory.

The cap is checked against ``Content-Length`` first and then while the body
streams in, so a client cannot make the server buffer more than the cap.
Multipart parts stay in memory (never a spooled temporary file: the gateway
writes no file, audio included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from starlette.requests import ClientDisconnect, Request

from hushgate.server.openai.errors import ApiError

MAX_FIELDS = 64


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def names(self) -> set[str]:
        return set(self.fields) | set(self.files)


async def read_capped(request: Request, limit_bytes: int) -> bytes:
    too_large = ApiError(
        413, f"the request body is larger than this server's limit of {limit_bytes} bytes", code="request_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit_bytes:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away before the body was complete") from None
    return b"".join(chunks)


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["content-type"] = value
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def parse_multipart(body: bytes, content_type: str) -> Form:
    kind, params = _header_params(content_type)
    boundary = params.get("boundary")
    if kind != "multipart/form-data" or not boundary:
        raise ApiError(
            400, "the body must be multipart/form-data (a `file` part and form fields)", code="invalid_content_type"
        )
    delimiter = b"--" + boundary.encode("latin-1")
    parts = body.split(delimiter)
    if len(parts) < 3 or not parts[-1].startswith(b"--"):
        raise ApiError(400, "the multipart body is truncated or malformed", code="invalid_multipart")
    form = Form()
    for raw in parts[1:-1]:
        if len(form.fields) + len(form.files) >= MAX_FIELDS:
            raise ApiError(400, f"more than {MAX_FIELDS} form parts", code="invalid_multipart")
        head, sep, content = raw.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "a multipart part has no header", code="invalid_multipart")
        content = content.removesuffix(b"\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        _, disposition = _header_params("x/x; " + headers.get("content-disposition", "").partition(";")[2])
        name = disposition.get("name")
        if name is None:
            raise ApiError(400, "a multipart part has no name", code="invalid_multipart")
        if "filename" in disposition:
            form.files[name] = Upload(disposition["filename"], headers.get("content-type", ""), content)
        else:
            try:
                form.fields.setdefault(name, []).append(content.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, f"form field {name!r} is not UTF-8 text", param=name) from None
    return form


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return value
