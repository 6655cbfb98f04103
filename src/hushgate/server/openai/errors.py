"""Errors in the shape OpenAI clients parse: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import math

from starlette.responses import JSONResponse

# The `type` OpenAI gives each status; its SDKs pick their exception class from the status.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_exceeded",
    503: "server_error",
    500: "server_error",
}


class ApiError(Exception):
    """A refusal to tell the client; raised anywhere in a request, answered by the route."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after_s is not None:
            # Whole seconds (RFC 9110), rounded up so a client that obeys it is let in.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return JSONResponse(
            {
                "error": {
                    "message": self.message,
                    "type": _TYPES.get(self.status, "invalid_request_error"),
                    "param": self.param,
                    "code": self.code,
                }
            },
            status_code=self.status,
            headers=headers,
        )


def bad_param(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)
