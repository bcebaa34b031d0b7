"""The exact one-sided McNemar test that the recipes' shipping rules pair two models' per-item hits with."""

from __future__ import annotations


def sign_test(wins: int, losses: int) -> float:
    """P(at least `wins` of the wins + losses discordant items go the candidate's way | no difference)."""
    from scipy.stats import binomtest

    return binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0


def discordant(base: dict[str, int], cand: dict[str, int]) -> tuple[int, int]:
    """Items that only the candidate gets right, and those only the baseline gets right ({key: 1 or 0} each)."""
    if set(base) != set(cand):
        raise ValueError(f"the two models were scored on different items ({len(set(base) ^ set(cand))} differ)")
    return sum(cand[k] > base[k] for k in base), sum(cand[k] < base[k] for k in base)
