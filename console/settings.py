"""Django settings: every value comes from the environment, with defaults that run locally."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from console.ops.origins import normalized_origin

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value not in ("True", "False", ""):
        raise ImproperlyConfigured(f"{name} must be True, False or empty, got {value!r}")
    return value == "True"


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from exc


def envfloat(name: str, default: str) -> float:
    value = os.getenv(name, default)
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def envrate(name: str, default: str) -> str:
    """A rate as COUNT/SECONDS (or 0 for no limit), checked here rather than on first use."""
    value = os.getenv(name, default).strip()
    count, _, seconds = value.partition("/")
    if not count.isdigit() or (seconds and not seconds.isdigit()) or (count != "0" and seconds in ("", "0")):
        raise ImproperlyConfigured(f"{name} must look like 20/60 (a count per seconds) or 0, got {value!r}")
    return value


def envsecret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (for container secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.getenv(name, default)


def _generated_secret_key(data_dir: Path) -> str:
    """A key kept in the data folder, so `make run` works with no configuration at all."""
    key_file = data_dir / ".secret_key"
    if not key_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# -- core ------------------------------------------------------------------------------
DEBUG = envbool("DJANGO_DEBUG", "False")
RAG_DATA_DIR = Path(os.getenv("RAG_DATA_DIR", str(BASE_DIR / "data")))
SECRET_KEY = envsecret("DJANGO_SECRET_KEY") or _generated_secret_key(RAG_DATA_DIR)
ALLOWED_HOSTS = [h.strip() for h in os.getenv("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_tasks_db so that `manage.py db_worker` is console's (it recovers crashed jobs first).
    "console",
    "django_tasks",
    "django_tasks_db",
    "django_prometheus",  # django_* series at /metrics (requests, responses, exceptions by view)
    "csp",  # django-csp: the Content-Security-Policy header (and its settings checks)
    "bots.discord",
    "bots.slack",
]

MIDDLEWARE = [
    # Before anything reads request.is_secure(): X-Forwarded-Proto counts only from TRUSTED_PROXIES.
    "console.ops.security.ForwardedProtoMiddleware",
    "console.ops.middleware.RequestContextMiddleware",  # first: request id, access log, rag_http_* for everything below
    # Before any handler reads input: a body that is not UTF-8, or NUL in a field, is answered 400.
    "console.ops.request_input.RequestInputMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check reads the form: an upload refused whole gets a message, not a bare 400.
    "console.ingest.limits.UploadLimitsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "console.urls"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:dashboard"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True

ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# -- database --------------------------------------------------------------------------
DATABASE_URL = os.getenv("DATABASE_URL", "")
if DATABASE_URL:
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(RAG_DATA_DIR / "lorebot.sqlite3"),
            "OPTIONS": {
                # Web, worker and many chats write at once: WAL lets readers run beside a
                # writer, IMMEDIATE takes the write lock up front (no deadlocked upgrades),
                # and a busy writer is waited for instead of failing at once.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # Each thread keeps its connection, as on PostgreSQL: opening one (its PRAGMAs and SQL
            # functions) and closing it (a WAL checkpoint) cost more than the session and user lookups
            # of a WebSocket's connect, which 200 sockets opening at once queue for on one thread.
            "CONN_MAX_AGE": 60,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- background jobs (django-tasks; the worker is `manage.py db_worker`) ---------------
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
INGEST_STALE_SECONDS = envint("INGEST_STALE_SECONDS", "60")  # a running job with an older heartbeat is re-queued
INGEST_MAX_ATTEMPTS = envint("INGEST_MAX_ATTEMPTS", "3")  # per file, for transient errors and worker crashes
INGEST_RETRY_BACKOFF_SECONDS = envfloat("INGEST_RETRY_BACKOFF_SECONDS", "2")  # doubled on each retry
# Each file is parsed in a child process within these limits, so a zip bomb or a parser stuck on a
# hostile file fails alone, with an error that names the limit (console/ingest/parsing.py).
INGEST_PARSE_TIMEOUT_SECONDS = envfloat("INGEST_PARSE_TIMEOUT_SECONDS", "120")
INGEST_PARSE_MAX_MEMORY_MB = envint("INGEST_PARSE_MAX_MEMORY_MB", "1024")
INGEST_PARSE_MAX_INFLATED_MB = envint("INGEST_PARSE_MAX_INFLATED_MB", "200")
# Under this much free space on the data folder's disk, uploads are refused ("disk full"), a failing
# file's error says so, and /health/ready reports "degraded".
INGEST_MIN_FREE_MB = envint("INGEST_MIN_FREE_MB", "100")
# Uploads: past these a file is refused by name (and the rest go through). Django's own caps sit above
# them, so a too-large request still gets a readable page (console.ingest.limits) rather than a bare 400.
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", "200")
# Under 255: Django cuts longer names to 255 on arrival, and a cut name must still be over the limit.
UPLOAD_MAX_NAME_CHARS = envint("UPLOAD_MAX_NAME_CHARS", "200")
if not 1 <= UPLOAD_MAX_NAME_CHARS <= 255:
    raise ImproperlyConfigured("UPLOAD_MAX_NAME_CHARS must be between 1 and 255 (the database keeps 255)")
DATA_UPLOAD_MAX_NUMBER_FILES = 2 * UPLOAD_MAX_FILES
# Synced sources (console.syncing): how often the worker looks for due sources and for syncs whose worker died.
SYNC_CHECK_SECONDS = envfloat("SYNC_CHECK_SECONDS", "10")

# -- static files, i18n ----------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = RAG_DATA_DIR / "static"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# -- logging (structlog, configured once in console.ops.logs) ---------------------------
LOG_FORMAT = os.getenv("LOG_FORMAT", "console" if DEBUG else "json")
LOG_LEVEL = os.getenv("LOG_LEVEL", "INFO")
if LOG_FORMAT not in ("console", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be console or json, got {LOG_FORMAT!r}")
LOGGING_CONFIG = None  # console.apps configures logging once, for every entry point

# -- metrics ---------------------------------------------------------------------------
# /metrics answers only these client addresses (the Prometheus scraper's).
METRICS_ALLOWED_IPS = [ip.strip() for ip in os.getenv("METRICS_ALLOWED_IPS", "127.0.0.1,::1").split(",") if ip.strip()]

# -- operations: metrics, logs, health (console/ops: metrics.py, middleware.py, logs.py, health.py) --
# A scraper sending `Authorization: Bearer <token>` may read /metrics from any address.
METRICS_BEARER_TOKEN = envsecret("METRICS_BEARER_TOKEN")
# Read by prometheus_client itself when it is imported: every process (daphne workers, the job
# worker, the bots) then writes its figures to files in this folder and /metrics sums them. Empty
# it before the processes start (`make run` does; systemd: ExecStartPre), never while they run.
PROMETHEUS_MULTIPROC_DIR = os.getenv("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR {PROMETHEUS_MULTIPROC_DIR!r} is not a directory; create it first")


def _networks(name: str, default: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(n.strip(), strict=False) for n in os.getenv(name, default).split(",") if n.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be comma-separated addresses or networks: {exc}") from exc


# Proxies (addresses or networks, e.g. 127.0.0.1,10.0.0.0/8) whose X-Forwarded-For names the client:
# for the logs' client_ip and the METRICS_ALLOWED_IPS check. Empty: the peer is the client.
TRUSTED_PROXIES = _networks("TRUSTED_PROXIES", "")
LOG_CONTENT = envbool("LOG_CONTENT", "False")  # True: questions and document text may appear in logs
WARMUP_ON_START = envbool("WARMUP_ON_START", "True")  # the server loads the model and indexes in the background
WARMUP_WAIT_SECONDS = envfloat("WARMUP_WAIT_SECONDS", "60")  # a question waits this long for the warm-up
# How long a web process's thread may hold the GIL while another wants it (Python's default is 5 ms). The
# chat's writer and pool threads release it on every database call and then wait up to this long to get it
# back from the busy event loop: at 5 ms, 200 questions at once queued behind each other's stores.
GIL_SWITCH_INTERVAL_MS = envfloat("GIL_SWITCH_INTERVAL_MS", "0.5")
if not 0 < GIL_SWITCH_INTERVAL_MS <= 1000:
    raise ImproperlyConfigured(f"GIL_SWITCH_INTERVAL_MS must be above 0 and at most 1000, got {GIL_SWITCH_INTERVAL_MS:g}")
# -- end of the operations block ---------------------------------------------------------

# -- the engine (ragcore) --------------------------------------------------------------
CHROMA_URL = os.getenv("CHROMA_URL", "")
CHROMA_COLLECTION = os.getenv("CHROMA_COLLECTION", "lorebot")
RAG_EMBEDDING_MODEL = os.getenv("RAG_EMBEDDING_MODEL", "")
# Where the keyword index and the uploaded originals live. Empty: in the database when the deployment is
# shared (PostgreSQL and CHROMA_URL, so several hosts may serve), else in RAG_DATA_DIR.
RAG_KEYWORD_STORE = os.getenv("RAG_KEYWORD_STORE", "")
if RAG_KEYWORD_STORE not in ("", "folder", "postgresql"):
    raise ImproperlyConfigured(f"RAG_KEYWORD_STORE must be folder, postgresql or empty, got {RAG_KEYWORD_STORE!r}")
if RAG_KEYWORD_STORE == "postgresql" and "postgresql" not in DATABASES["default"]["ENGINE"]:
    raise ImproperlyConfigured("RAG_KEYWORD_STORE=postgresql needs a PostgreSQL DATABASE_URL")
RAG_ORIGINALS_STORAGE = os.getenv("RAG_ORIGINALS_STORAGE", "")
RAG_EMBEDDING_BACKEND = os.getenv("RAG_EMBEDDING_BACKEND", "onnx-int8")
if RAG_EMBEDDING_BACKEND not in ("onnx-int8", "onnx", "torch"):
    raise ImproperlyConfigured(f"RAG_EMBEDDING_BACKEND must be onnx-int8, onnx or torch, got {RAG_EMBEDDING_BACKEND!r}")
RAG_EMBEDDING_CACHE_DIR = os.getenv("RAG_EMBEDDING_CACHE_DIR", "")
RAG_CHUNK_TOKENS = envint("RAG_CHUNK_TOKENS", "200")
RAG_CHUNK_OVERLAP_TOKENS = envint("RAG_CHUNK_OVERLAP_TOKENS", "32")
RAG_MAX_FILE_MB = envint("RAG_MAX_FILE_MB", "50")
RAG_TOP_K = envint("RAG_TOP_K", "6")
RAG_FUSION = os.getenv("RAG_FUSION", "convex")
RAG_HYBRID_ALPHA = envfloat("RAG_HYBRID_ALPHA", "0.5")
RAG_HISTORY_TURNS = envint("RAG_HISTORY_TURNS", "6")
# Below this evidence score (0..1, ragcore.abstention) the answer is "Your documents don't cover this."
RAG_ABSTAIN_THRESHOLD = envfloat("RAG_ABSTAIN_THRESHOLD", "0.5")
GROQ_API_KEY = envsecret("GROQ_API_KEY")
GROQ_MODEL = os.getenv("GROQ_MODEL", "llama-3.3-70b-versatile")
GROQ_BASE_URL = os.getenv("GROQ_BASE_URL", "")
GROQ_TIMEOUT = envfloat("GROQ_TIMEOUT", "30")
GROQ_MAX_RETRIES = envint("GROQ_MAX_RETRIES", "2")
# Which model writes answers: empty picks Groq when GROQ_API_KEY is set, else the extractive answer;
# "openai" is any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio, OpenAI).
LLM_PROVIDER = os.getenv("LLM_PROVIDER", "")
if LLM_PROVIDER not in ("", "groq", "openai", "extractive"):
    raise ImproperlyConfigured(f"LLM_PROVIDER must be groq, openai, extractive or empty, got {LLM_PROVIDER!r}")
LLM_BASE_URL = os.getenv("LLM_BASE_URL", "")
LLM_API_KEY = envsecret("LLM_API_KEY")
LLM_MODEL = os.getenv("LLM_MODEL", "")
if LLM_PROVIDER == "openai" and not LLM_MODEL:
    raise ImproperlyConfigured("LLM_PROVIDER=openai needs LLM_MODEL, e.g. llama3.2 (Ollama) or gpt-4o-mini (OpenAI)")
LLM_TIMEOUT = envfloat("LLM_TIMEOUT", "60")
LLM_MAX_RETRIES = envint("LLM_MAX_RETRIES", "2")

# -- the chat service ------------------------------------------------------------------
CHAT_MAX_QUESTION_CHARS = envint("CHAT_MAX_QUESTION_CHARS", "4000")
CHAT_RATE_LIMIT_USER = envrate("CHAT_RATE_LIMIT_USER", "20/60")  # questions / seconds; 0 turns it off
CHAT_RATE_LIMIT_CONVERSATION = envrate("CHAT_RATE_LIMIT_CONVERSATION", "10/60")
# An answer in progress whose process has not said it is alive for this long is finished as
# "interrupted", its partial text kept (console/ops/orphans.py); 0: this process never sweeps.
CHAT_ANSWER_STALE_SECONDS = envfloat("CHAT_ANSWER_STALE_SECONDS", "30")
# One-time codes that link a Slack or Discord account to a web-chat user (console/chat/links.py): how long
# one stays valid, and how many codes one Slack/Discord user may try (COUNT/SECONDS, 0: no limit).
LINK_CODE_MINUTES = envint("LINK_CODE_MINUTES", "10")
if LINK_CODE_MINUTES < 1:
    raise ImproperlyConfigured(f"LINK_CODE_MINUTES must be at least 1, got {LINK_CODE_MINUTES}")
LINK_CODE_ATTEMPTS = envrate("LINK_CODE_ATTEMPTS", "5/600")

# -- web chat over Channels (console/chat/consumer.py; appended by the web-chat change) --
CHAT_ALLOW_ANONYMOUS = envbool("CHAT_ALLOW_ANONYMOUS", "False")
# Frames one login session's chat sockets may send (COUNT/SECONDS, 0: no limit); past it they are dropped unread.
CHAT_FRAME_RATE = envrate("CHAT_FRAME_RATE", "60/10")
# Where users reach this server (e.g. https://lorebot.example.com); bots link sources to it.
# `make run` ingests Lorebot's own guide (data/docs) so a fresh install can answer; False keeps it out.
LOREBOT_GUIDE = envbool("LOREBOT_GUIDE", "True")
LOREBOT_PUBLIC_URL = os.getenv("LOREBOT_PUBLIC_URL", "")
# Rate limits and the Slack bot's event de-duplication live in the cache: per process by default;
# several web processes (and bots) need a shared one, e.g. redis://127.0.0.1:6379/1.
CACHE_URL = os.getenv("CACHE_URL", "")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": "lorebot", "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2}}}
REDIS_URL = os.getenv("REDIS_URL", "")
if REDIS_URL:
    # Several daphne processes share one layer; conversation state itself lives in the database.
    # redis-py 8 reads with a 5 s socket timeout by default, which aborts channels_redis's blocking
    # 5 s BZPOPMIN (redis/redis-py#4091); allow longer than that, and still notice a dead server.
    CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
    }}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# -- end of the web-chat block ----------------------------------------------------------

# -- production behind a proxy with TLS (console/ops/: security.py, ws_origin.py, login_throttle.py) --
# LOREBOT_PUBLIC_URL is where browsers reach Lorebot: its origin is trusted for CSRF (the login and
# every console POST behind TLS) and for the chat socket, and https:// there makes the cookies Secure.
LOREBOT_PUBLIC_ORIGIN = normalized_origin(LOREBOT_PUBLIC_URL) if LOREBOT_PUBLIC_URL else ""
if LOREBOT_PUBLIC_ORIGIN is None:
    raise ImproperlyConfigured(f"LOREBOT_PUBLIC_URL must look like https://lorebot.example.com, got {LOREBOT_PUBLIC_URL!r}")
CSRF_TRUSTED_ORIGINS = [LOREBOT_PUBLIC_ORIGIN] if LOREBOT_PUBLIC_ORIGIN else []
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LOREBOT_PUBLIC_ORIGIN.startswith("https://")
CSRF_COOKIE_HTTPONLY = True  # no script reads it: every form carries the token
# Django believes this header from any peer; ForwardedProtoMiddleware removes it unless the peer
# is one of TRUSTED_PROXIES, so a client cannot claim https for itself.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
# Sent on https responses only. Try TLS out with a few minutes (300) first: browsers remember it.
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", "31536000")
# Nothing inline: every script and style sheet is a static file, so 'self' is the whole policy.
# connect-src 'self' covers the chat socket (ws:/wss: to this host, CSP Level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Failed logins allowed per account and per client address (COUNT/SECONDS, 0: no limit); past that,
# logins are refused until the window ends. Counted in Django's cache: CACHE_URL shares the counts.
LOGIN_THROTTLE_ACCOUNT = envrate("LOGIN_THROTTLE_ACCOUNT", "5/300")
LOGIN_THROTTLE_ADDRESS = envrate("LOGIN_THROTTLE_ADDRESS", "20/300")
AUTHENTICATION_BACKENDS = [
    "console.ops.login_throttle.LoginThrottleBackend",  # first: refuses a throttled login before any password check
    "django.contrib.auth.backends.ModelBackend",
]
# -- end of the production block ----------------------------------------------------------

# -- Discord bot (bots/discord; `manage.py rundiscordbot`) ---------------------------------
DISCORD_BOT_TOKEN = envsecret("DISCORD_BOT_TOKEN")
# Base URLs, so the bot can be pointed at a proxy or at the fake server the tests run.
DISCORD_API_URL = os.getenv("DISCORD_API_URL", "https://discord.com/api/v10").rstrip("/")
DISCORD_GATEWAY_URL = os.getenv("DISCORD_GATEWAY_URL", "wss://gateway.discord.gg")
# Comma-separated ids; empty means every guild / channel the bot is in.
DISCORD_ALLOWED_GUILDS = [g.strip() for g in os.getenv("DISCORD_ALLOWED_GUILDS", "").split(",") if g.strip()]
DISCORD_ALLOWED_CHANNELS = [c.strip() for c in os.getenv("DISCORD_ALLOWED_CHANNELS", "").split(",") if c.strip()]
# False: answer every message in the allowed channels (needs DISCORD_MESSAGE_CONTENT).
DISCORD_MENTION_ONLY = envbool("DISCORD_MENTION_ONLY", "True")
# The privileged message-content intent; must also be switched on in the developer portal.
DISCORD_MESSAGE_CONTENT = envbool("DISCORD_MESSAGE_CONTENT", "False")
DISCORD_THREAD_PER_QUESTION = envbool("DISCORD_THREAD_PER_QUESTION", "False")
DISCORD_RATE_LIMIT_USER = envrate("DISCORD_RATE_LIMIT_USER", "10/60")  # questions / seconds per Discord user
# Seconds between edits of a streaming answer: Discord allows about 5 edits per 5 s per channel.
DISCORD_EDIT_INTERVAL = envfloat("DISCORD_EDIT_INTERVAL", "1.2")
# Edits and posts of answers per minute per channel, shared by every answer streaming there
# (Discord allows about 5 per 5 s per channel).
DISCORD_CHANNEL_EDITS_PER_MINUTE = envfloat("DISCORD_CHANNEL_EDITS_PER_MINUTE", "50")
# Comma-separated user (or webhook) ids of other bots the bot may answer; every other bot and webhook is
# ignored, so that two bots never answer each other in a loop. The bot's own messages are always ignored.
DISCORD_ALLOWED_BOTS = [b.strip() for b in os.getenv("DISCORD_ALLOWED_BOTS", "").split(",") if b.strip()]
# -- end of the Discord block ------------------------------------------------------------

# -- Slack bot (bots/slack: HTTP events at /slack/events, or `manage.py runslackbot`) ----
SLACK_BOT_TOKEN = envsecret("SLACK_BOT_TOKEN")  # xoxb-…; both ways of connecting need it
SLACK_SIGNING_SECRET = envsecret("SLACK_SIGNING_SECRET")  # verifies HTTP events
SLACK_APP_TOKEN = envsecret("SLACK_APP_TOKEN")  # xapp-… with connections:write, for Socket Mode
# The Web API base URL, so the bot can be pointed at a proxy or at the fake server the tests run.
SLACK_API_URL = os.getenv("SLACK_API_URL", "https://slack.com/api/").rstrip("/") + "/"
# Comma-separated channel ids; empty means every channel the bot is invited to (DMs are always answered).
SLACK_ALLOWED_CHANNELS = [c.strip() for c in os.getenv("SLACK_ALLOWED_CHANNELS", "").split(",") if c.strip()]
# True: only mentions and DMs are answered; False: also follow-ups in threads the bot has answered.
SLACK_MENTION_ONLY = envbool("SLACK_MENTION_ONLY", "False")
SLACK_RATE_LIMIT_USER = envrate("SLACK_RATE_LIMIT_USER", "10/60")  # questions / seconds per Slack user
# Seconds between edits of a streaming answer: chat.update is rate limited (Tier 3, ~50 a minute).
SLACK_UPDATE_INTERVAL = envfloat("SLACK_UPDATE_INTERVAL", "1.0")
# Writes (edits and posts of answers) per minute per channel, shared by every answer streaming there:
# Slack's guidance is about 50 chat.update calls a minute per channel; this keeps some room.
SLACK_CHANNEL_EDITS_PER_MINUTE = envfloat("SLACK_CHANNEL_EDITS_PER_MINUTE", "45")
# Comma-separated ids (bot id B…, app id A… or bot user id U…) of other bots the bot may answer; every
# other bot is ignored, so that two bots never answer each other in a loop. Its own messages always are.
SLACK_ALLOWED_BOTS = [b.strip() for b in os.getenv("SLACK_ALLOWED_BOTS", "").split(",") if b.strip()]
# -- end of the Slack block --------------------------------------------------------------
