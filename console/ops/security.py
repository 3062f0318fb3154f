"""Behind a TLS proxy: only a trusted proxy may say that the client's connection was https."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin

from console.ops.middleware import _trusted as is_trusted_proxy

__all__ = ["ForwardedProtoMiddleware", "is_trusted_proxy"]


class ForwardedProtoMiddleware(MiddlewareMixin):
    """Removes X-Forwarded-Proto from requests whose peer is not in TRUSTED_PROXIES.

    Django's SECURE_PROXY_SSL_HEADER believes the header from anyone who sends it; a client talking
    to daphne directly could then claim https and be handed Secure cookies and HSTS over plain http.
    """

    def process_request(self, request: HttpRequest) -> None:
        if not is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
