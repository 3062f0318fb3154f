"""ASGI entry point for daphne: `daphne console.asgi:application`.

HTTP goes to Django (static files included, so one daphne process is a whole site); WebSockets go
through the same-origin check (scheme, host and port) and the session/auth middleware to the chat consumer.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models (the consumer does, through console.chat).
django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from console.ops.orphans import start_sweeper  # noqa: E402
from console.ops.warmup import start_warmup  # noqa: E402
from console.ops.ws_origin import SameOriginValidator  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402

sys.setswitchinterval(settings.GIL_SWITCH_INTERVAL_MS / 1000)  # the web process only (see the setting)

# Answers a killed process left "in progress" are finished now, and then every few seconds.
start_sweeper()

if settings.WARMUP_ON_START:
    # Daphne starts accepting connections at once; the model and indexes load in the background.
    start_warmup()

application = ProtocolTypeRouter({
    # Serves /static/ from the apps' static folders: nothing to collect, no second server to run.
    "http": ASGIStaticFilesHandler(django_http),
    "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
