"""Request input no handler should ever see, refused with 400 before any view runs.

A body that is not UTF-8 (every body Lorebot reads is JSON, a form or text; an upload's
multipart body carries raw file bytes and is left to the upload code), and a query-string or
form field holding a NUL character (PostgreSQL refuses NUL in text, and dropping it could turn
one password, id or filter into another). Django itself decodes query strings and forms
with replacement characters, so no unpaired surrogate can arrive over HTTP. Each refusal names
what was wrong, is logged and counted in `rag_http_refused_total{reason}`.
"""

from __future__ import annotations

from collections.abc import Awaitable

import structlog
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from console.ops.both_modes import BothModesMiddleware
from console.ops.metrics import HTTP_REFUSED
from console.ops.text_input import text_problem

log = structlog.get_logger(__name__, component="http")

# The one body type whose bytes are not text: uploads (the file parts are checked by the upload code).
_BINARY_BODY = "multipart/form-data"
_FORM_BODY = "application/x-www-form-urlencoded"


def input_problem(request: HttpRequest) -> tuple[str, str]:
    """(reason label, message) for input that must not reach a handler, or ("", "")."""
    if request.content_type != _BINARY_BODY:
        body = request.body  # Django refuses one over DATA_UPLOAD_MAX_MEMORY_SIZE here (400)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return "not_utf8", (f"The request body is not UTF-8: byte 0x{body[exc.start]:02x} at position "
                                f"{exc.start} cannot be decoded. Send UTF-8 text.")
    fields = [("query string", request.GET)]
    if request.method == "POST" and request.content_type == _FORM_BODY:
        fields.append(("form", request.POST))
    for where, data in fields:
        for name, values in data.lists():
            for value in (name, *values):
                problem = text_problem(value)
                if problem:
                    return "bad_text", f"The {where} field {name[:40]!r} {problem}; it cannot be accepted."
    return "", ""


class RequestInputMiddleware(BothModesMiddleware):
    """Answers 400, naming the problem, to a request whose body or fields no handler should see."""

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        refused = self._refusal(request)
        if self.is_async:
            return self._acall(request, refused)
        return refused if refused is not None else self.get_response(request)

    async def _acall(self, request: HttpRequest, refused: HttpResponse | None) -> HttpResponse:
        if refused is not None:
            return refused
        response: HttpResponse = await self.get_response(request)
        return response

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        reason, message = input_problem(request)
        if not reason:
            return None
        HTTP_REFUSED.labels(reason).inc()
        log.warning("http.input_refused", reason=reason, detail=message)
        return HttpResponseBadRequest(message + "\n", content_type="text/plain; charset=utf-8")
