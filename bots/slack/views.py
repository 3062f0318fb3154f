"""POST /slack/events: Slack's Events API, slash commands and interactivity, over HTTP.

The signature is checked here, before bolt parses anything, so that a forged or stale request is
answered 401 and counted, and a malformed body 400, without a traceback. That the body is UTF-8 is
checked once, for every view, by console.ops.request_input.RequestInputMiddleware. Then bolt dispatches the
request and answers at once; the answer itself is written in the background (see app.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt
from slack_bolt.adapter.django.handler import to_django_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

from bots.metrics import BOT_EVENTS
from bots.slack.answering import PLATFORM
from bots.slack.app import get_app

log = structlog.get_logger(__name__, component="slack")

# Slack's rule: refuse a request whose timestamp is more than five minutes away from now (replays).
MAX_AGE_SECONDS = 300
# What Slack posts: the Events API as JSON, slash commands and interactivity as a form. Anything else
# (multipart above all, whose bytes RequestInputMiddleware leaves unchecked) is refused before decoding.
SLACK_BODY_TYPES = ("application/json", "application/x-www-form-urlencoded")


def signature_problem(body: str, headers: Mapping[str, str], signing_secret: str) -> str:
    """Why a request is not from Slack ("" when it is): slack_sdk's SignatureVerifier, with a reason."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        return "missing X-Slack-Signature or X-Slack-Request-Timestamp"
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if age > MAX_AGE_SECONDS:
        return f"timestamp is {int(age)} s away from now (more than {MAX_AGE_SECONDS})"
    if not SignatureVerifier(signing_secret).is_valid(body, timestamp, signature):
        return "signature does not match the body and SLACK_SIGNING_SECRET"
    return ""


@csrf_exempt
async def events(request: HttpRequest) -> HttpResponse:
    """Verifies, parses and dispatches one request from Slack."""
    if not (settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET):
        return HttpResponse("Slack is not configured here: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.\n",
                            status=503, content_type="text/plain")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    received = time.monotonic()
    if request.content_type not in SLACK_BODY_TYPES:
        kind = request.content_type or "no content type"
        return _malformed(request, ValueError(f"Slack sends JSON or a form, not {kind}"))
    # RequestInputMiddleware has refused every JSON or form body that is not UTF-8: this cannot fail.
    text = request.body.decode("utf-8")
    problem = signature_problem(text, request.headers, settings.SLACK_SIGNING_SECRET)
    if problem:
        BOT_EVENTS.labels(PLATFORM, "forged").inc()
        log.warning("slack.request_rejected", reason=problem, client=request.META.get("REMOTE_ADDR"))
        return HttpResponse("invalid request signature\n", status=401, content_type="text/plain")
    try:
        # bolt parses the body the same way, but expects an object and fails obscurely on anything else
        if not isinstance(parse_body(text, request.content_type), dict):
            raise ValueError("the body is not a JSON object, nor a form")
    except ValueError as exc:  # json's JSONDecodeError is a ValueError too
        return _malformed(request, exc)
    bolt_request = AsyncBoltRequest(body=text, query=request.META.get("QUERY_STRING", ""),
                                    headers=dict(request.headers), context={"received_at": received})
    return to_django_response(await get_app().async_dispatch(bolt_request))


def _malformed(request: HttpRequest, exc: ValueError) -> HttpResponse:
    """400 for a body of another content type, or that is not a JSON object nor a form; counted as a bad request."""
    BOT_EVENTS.labels(PLATFORM, "bad_request").inc()
    reason = str(exc)[:200]
    log.warning("slack.request_malformed", error=reason, content_type=request.content_type)
    return HttpResponse(f"malformed request body: {reason}\n", status=400, content_type="text/plain")
