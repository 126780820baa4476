"""Quality of a screen: ROC AUC, enrichment factor and enrichment curves, in plain numpy.

Ties are handled exactly as random tie-breaking would on average: the AUC uses mid-ranks
(the Mann-Whitney U statistic), and at an enrichment cut-off that falls inside a group of tied
scores, that group contributes its share of actives pro rata.
"""

from __future__ import annotations

import numpy as np

from hpclab._validate import HpclabError

__all__ = ["roc_auc", "enrichment_factor", "enrichment_curve", "roc_curve"]


def _check(scores, labels):
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise HpclabError(f"scores and labels must have the same length, got {s.size} and {y.size}")
    if s.size == 0:
        raise HpclabError("scores must not be empty")
    if np.isnan(s).any():
        raise HpclabError("scores must not contain NaN (give unscored molecules -inf)")
    n_act = int(y.sum())
    if n_act == 0 or n_act == y.size:
        raise HpclabError("labels must contain both actives and inactives")
    return s, y


def _midranks(s: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given the mean of the ranks they span."""
    order = np.argsort(s, kind="mergesort")
    uniq, inverse, counts = np.unique(s[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0
    ranks = np.empty(s.size)
    ranks[order] = mean_rank[inverse]
    return ranks


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve: the probability that an active outscores an inactive.

    ``AUC = (R_act - P(P+1)/2) / (P N)`` with ``R_act`` the sum of the actives' mid-ranks, ``P``
    actives and ``N`` inactives (Mann-Whitney U / (P N); Hanley & McNeil, Radiology 143, 29, 1982).
    Higher scores mean more likely active.
    """
    s, y = _check(scores, labels)
    ranks = _midranks(s)
    p = int(y.sum())
    n = y.size - p
    return float((ranks[y].sum() - p * (p + 1) / 2.0) / (p * n))


def _found(s: np.ndarray, y: np.ndarray, n_top: np.ndarray) -> np.ndarray:
    """Expected actives among the ``n_top`` best scores (random tie-breaking), for each n_top."""
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order].astype(float)
    uniq_desc, start = np.unique(-ss, return_index=True)  # groups of ties, best first
    counts = np.diff(np.append(start, ss.size))
    act = np.add.reduceat(yy, start)
    cum_n = np.cumsum(counts)
    cum_a = np.cumsum(act)
    n_top = np.asarray(n_top, dtype=float)
    g = np.searchsorted(cum_n, n_top, side="left")  # group holding the cut
    g = np.clip(g, 0, counts.size - 1)
    before_n = cum_n[g] - counts[g]
    before_a = cum_a[g] - act[g]
    return before_a + (n_top - before_n) * act[g] / counts[g]


def enrichment_factor(scores, labels, fraction: float = 0.01) -> float:
    """Enrichment factor at ``fraction`` of the ranked library.

    ``EF_x = (a_x / n_x) / (A / N)`` with ``n_x = ceil(x N)`` molecules taken from the top,
    ``a_x`` the actives among them, ``A`` actives in all ``N`` molecules.
    """
    s, y = _check(scores, labels)
    if not 0 < fraction <= 1:
        raise HpclabError(f"fraction must be in (0, 1], got {fraction!r}")
    n_top = int(np.ceil(fraction * s.size - 1e-9))
    found = _found(s, y, np.array([n_top]))[0]
    return float((found / n_top) / (y.sum() / y.size))


def enrichment_curve(scores, labels, fractions=None) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of actives found against fraction of the library screened (best scores first).

    Returns ``(fractions, recovered)``; a random ranking gives the diagonal.
    """
    s, y = _check(scores, labels)
    if fractions is None:
        fractions = np.unique(np.r_[np.linspace(0, 1, 201), np.geomspace(1e-3, 1, 60)])
    fractions = np.clip(np.asarray(fractions, dtype=float), 0, 1)
    n_top = fractions * s.size
    recovered = np.where(n_top > 0, _found(s, y, np.maximum(n_top, 1e-12)), 0.0) / y.sum()
    return fractions, recovered


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score threshold (from (0,0) to (1,1))."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ss.size - 1]
    tp = np.cumsum(yy)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / (~y).sum()], np.r_[0.0, tp / y.sum()]
