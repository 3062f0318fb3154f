"""Text to BM25 terms: lowercase, split on non-alphanumerics, drop stopwords, Snowball-stem."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import Stemmer

# Letters and digits of any script; `\w` also matches "_", which joins words in identifiers.
_WORD = re.compile(r"[^\W_]+")

# English function words, close to the lists bm25s and scikit-learn use, matched before stemming.
# Short on purpose: content words such as "system" or "found" stay searchable.
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against ain all also am an and any are aren as at be because been before
    being below between both but by can cannot could couldn did didn do does doesn doing don down during each
    either else etc even ever every few for from further had hadn has hasn have haven having he her here hers
    herself him himself his how however i if in into is isn it its itself just ll may me might mightn more most
    must mustn my myself neither no nor not now of off on once only or other ought our ours ourselves out over
    own re same shall shan she should shouldn so some such than that the their theirs them themselves then there
    these they this those through thus to too under until up upon us ve very via was wasn we were weren what
    when where whether which while who whom whose why will with won would wouldn yet you your yours yourself
    yourselves
    """.split()
)

# PyStemmer objects keep a mutable cache and are documented as unsafe to share between threads.
_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def tokenize(text: str) -> list[str]:
    """The index terms of `text`, in order, with repeats."""
    words = [w for w in _WORD.findall(text.lower()) if (len(w) > 1 or w.isdigit()) and w not in STOPWORDS]
    return _stemmer().stemWords(words) if words else words


@lru_cache(maxsize=8192)
def term_set(text: str) -> frozenset[str]:
    """The distinct index terms of a chunk's text, kept: the same chunks come back question after question
    (for de-duplication and the abstention evidence), and the regex and stemming are the costly part."""
    return frozenset(tokenize(text))
