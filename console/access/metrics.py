"""Prometheus series of access control: what was refused, and documents moved between collections."""

from __future__ import annotations

from prometheus_client import Counter

# what: document (source viewer), original (download), conversation (another's history), citation
# (a stored answer citing what the reader may no longer see), link_code (a wrong or expired code).
ACCESS_REFUSED = Counter("rag_access_refused", "Reads refused by collection access, by surface and what.",
                         ["surface", "what"])
DOCUMENTS_MOVED = Counter("rag_documents_moved", "Documents moved to another collection, by outcome.", ["outcome"])
ACCOUNT_LINKS = Counter("rag_account_links", "Slack/Discord accounts linked, by platform and how (code, staff).",
                        ["platform", "how"])
# outcome: issued (web chat), linked, wrong, expired, used, rate_limited, cancelled (posted in a channel).
LINK_CODES = Counter("rag_link_codes", "One-time account-link codes, by platform and outcome.", ["platform", "outcome"])
