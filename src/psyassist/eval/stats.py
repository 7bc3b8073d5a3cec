"""Interval and significance arithmetic for accuracy numbers (standard library only).

    python -c "from psyassist.eval.stats import wilson, mcnemar; print(wilson(403, 500), mcnemar(12, 30))"

- `wilson(k, n)`: the Wilson score interval (Wilson 1927; Newcombe 1998 method 3).
  Unlike the normal approximation it stays inside [0, 1] and is honest for small n
  and accuracies near 0 or 1.  At n = 500 and 80% accuracy it is ±3.5 points.
- `mcnemar(b, c)`: the paired test for base vs tuned on the SAME questions, where b =
  items only the first model got right and c = items only the second got right.  With
  fewer than 25 discordant items the exact two-sided binomial test is used (the
  chi-square approximation is poor there); otherwise the chi-square statistic with
  Edwards' continuity correction, 1 degree of freedom.
"""

from __future__ import annotations

import math

EXACT_BELOW = 25  # discordant pairs; the usual threshold for the exact McNemar test
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n; n == 0 gives (0, 1): nothing is known."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp the rounding noise at the edges (k = 0 gives a lower bound of -1e-17).
    return max(0.0, centre - half), min(1.0, centre + half)


def binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial p-value for k of n under p = 0.5 (twice the smaller tail, capped at 1)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def mcnemar(b: int, c: int) -> dict:
    """McNemar's test on the discordant counts b (only A right) and c (only B right)."""
    n = b + c
    if n < EXACT_BELOW:
        return {"b": b, "c": c, "method": "exact binomial (two-sided)", "statistic": None,
                "p_value": binom_two_sided(b, n)}
    stat = (abs(b - c) - 1) ** 2 / n
    # chi-square with 1 df: P(X > s) = erfc(sqrt(s / 2))
    return {"b": b, "c": c, "method": "chi-square with continuity correction (1 df)", "statistic": stat,
            "p_value": math.erfc(math.sqrt(stat / 2))}
