"""Inter-rater agreement on good/bad labels: Krippendorff's alpha and pairwise agreement rates.

Pure functions over `{item: {rater: label}}` so that they can be checked by hand on tiny examples.
Skips are not judgements and must be left out by the caller.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Alpha:
    value: float | None  # None when there is nothing to compare or no variation at all
    items: int  # items with at least two pairable labels
    labels: int  # pairable labels on those items (n in Krippendorff's notation)


def krippendorff_alpha_nominal(units: Iterable[Sequence[str]]) -> Alpha:
    """Krippendorff's alpha for nominal data: 1 - (n-1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k.

    o_ck is the coincidence matrix: within each unit of m values, every ordered pair of values
    from different raters adds 1/(m-1). Units with fewer than two values are not pairable.
    """
    return alpha_from_unit_counts((dict(Counter(values)), 1) for values in units)


def alpha_from_unit_counts(groups: Iterable[tuple[Mapping[str, int], int]]) -> Alpha:
    """The same alpha from (value counts of a unit, how many units have exactly those counts):
    the database can group units by their counts, so millions of labels become a few rows."""
    o: defaultdict[tuple[str, str], float] = defaultdict(float)
    items = 0
    for counts, times in groups:
        m = sum(counts.values())
        if m < 2 or times <= 0:
            continue
        items += times
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nk - 1) if c == k else nc * nk
                if pairs:
                    o[(c, k)] += times * pairs / (m - 1)
    n_c: defaultdict[str, float] = defaultdict(float)
    for (c, _k), v in o.items():
        n_c[c] += v
    n = sum(n_c.values())
    disagree = sum(v for (c, k), v in o.items() if c != k)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n <= 1 or expected == 0:
        return Alpha(None, items, round(n))
    return Alpha(1 - (n - 1) * disagree / expected, items, round(n))


@dataclass(frozen=True)
class PairwiseAgreement:
    agreements: int  # co-raters who gave the same label, summed over shared items
    pairs: int  # co-raters, summed over shared items
    items: int  # shared items (items this rater labelled together with at least one other)

    @property
    def rate(self) -> float | None:
        return self.agreements / self.pairs if self.pairs else None


def pairwise_agreement(units: Mapping[int, Mapping[int, str]]) -> dict[int, PairwiseAgreement]:
    """Per rater: the share of (this rater, co-rater) pairs on shared items with the same label.

    The reference definition; the dashboard computes the same sums in SQL (annotators.py)."""
    acc: dict[int, list[int]] = {}
    for labels in units.values():
        m = len(labels)
        if m < 2:
            continue
        counts = Counter(labels.values())
        for rater, label in labels.items():
            a = acc.setdefault(rater, [0, 0, 0])
            a[0] += counts[label] - 1
            a[1] += m - 1
            a[2] += 1
    return {r: PairwiseAgreement(*v) for r, v in acc.items()}
