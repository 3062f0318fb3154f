"""Fusing the keyword and dense rankings into one: pure functions over (id, score) lists."""

from __future__ import annotations

from collections.abc import Sequence

Ranking = Sequence[tuple[str, float]]


def fuse_rrf(rankings: Sequence[Ranking], *, k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score = Σ w / (k + rank), rank counted from 1.

    k=60 is the constant of Cormack et al. (2009); it damps the head of each list so
    that one retriever's top hit cannot outvote agreement lower down.
    """
    if not rankings:
        return []
    weights = weights or [1.0] * len(rankings)
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda kv: kv[1], reverse=True)


def _min_max(ranking: Ranking) -> dict[str, float]:
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    low, high = min(scores), max(scores)
    if high <= low:
        # A single hit, or all tied: they are all "the best this retriever found".
        return {item: 1.0 for item, _ in ranking}
    return {item: (s - low) / (high - low) for item, s in ranking}


def fuse_convex(rankings: Sequence[Ranking], weights: Sequence[float]) -> list[tuple[str, float]]:
    """Normalized score combination: Σ w · minmax(score); an item a list lacks scores 0 there."""
    if not rankings:
        return []
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for item, score in _min_max(ranking).items():
            fused[item] = fused.get(item, 0.0) + weight * score
    return sorted(fused.items(), key=lambda kv: kv[1], reverse=True)
