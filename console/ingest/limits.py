"""An upload Django's request parser refuses whole gets a page that says why, instead of a bare "Bad Request (400)".

Django reads the multipart body before any view (the CSRF check reads the form), and stops with
an exception past DATA_UPLOAD_MAX_NUMBER_FILES files or a part whose headers exceed 1,024 bytes
(a file name of some 1,000 characters: django.http.multipartparser.MAX_TOTAL_HEADER_SIZE). Files
within those bounds are checked one by one by console.ingest.uploads, which names each refused one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect
from django.urls import reverse

from console.ops.both_modes import BothModesMiddleware
from ragcore.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="ingest_service")


class UploadLimitsMiddleware(BothModesMiddleware):
    """Before the CSRF check: reads the upload form's body, and turns a refusal of the whole request into a message.

    Sync and async capable, so under daphne it adds no thread hop to every request (and a client
    that hangs up still cancels the request as it would without this middleware).
    """

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return await self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> HttpResponse | None:
        if request.method != "POST" or request.path != reverse("console:documents"):
            return None
        try:
            request.POST  # noqa: B018 - parses the body now, where its errors can be answered
        except (TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig, MultiPartParserError) as exc:
            reason = _reason(exc)
            PIPELINE_ERRORS.labels("upload").inc()
            log.info("upload.refused_whole", reason=reason, error_type=type(exc).__name__)
            # Nothing was stored and no state changes: sending the user back needs no CSRF check.
            messages.error(request, f"Upload refused: {reason}")
            return redirect("console:documents")
        return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, TooManyFilesSent):
        return (f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files in one upload; "
                f"send at most {settings.UPLOAD_MAX_FILES} at a time (UPLOAD_MAX_FILES).")
    if isinstance(exc, MultiPartParserError) and "header size" in str(exc):
        return (f"a file name is too long to be read (over about 1,000 characters); "
                f"names may have at most {settings.UPLOAD_MAX_NAME_CHARS} characters (UPLOAD_MAX_NAME_CHARS).")
    return f"the request could not be read ({exc})."
