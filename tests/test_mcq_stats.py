"""Wilson interval and McNemar test against published and independently computed values."""

from __future__ import annotations

import math

import pytest

from psyassist.eval.stats import binom_two_sided, mcnemar, wilson


# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no correction).
@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0000),
])
def test_wilson_matches_newcombe_1998(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_width_at_the_seed_anchor():
    # mission.md: 80.60% on 500 questions is ±3.5 points
    lo, hi = wilson(403, 500)
    assert 0.033 < 0.806 - lo < 0.037 and 0.031 < hi - 0.806 < 0.036


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(5, 4)


def test_exact_binomial_known_values():
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024
    assert binom_two_sided(1, 10) == pytest.approx(22 / 1024)
    assert binom_two_sided(5, 10) == 1.0  # symmetric: capped at 1
    assert binom_two_sided(0, 0) == 1.0


def test_mcnemar_small_counts_use_the_exact_test():
    r = mcnemar(1, 9)
    assert r["method"].startswith("exact")
    assert r["p_value"] == pytest.approx(0.021484375)
    assert mcnemar(9, 1)["p_value"] == r["p_value"]  # two-sided: order does not matter


def test_mcnemar_large_counts_use_chi_square_with_correction():
    r = mcnemar(10, 30)
    assert r["method"].startswith("chi-square")
    assert r["statistic"] == pytest.approx((abs(10 - 30) - 1) ** 2 / 40)  # 9.025
    # scipy.stats.chi2.sf(9.025, 1) = 0.0026631...
    assert r["p_value"] == pytest.approx(0.0026631, rel=1e-4)


def test_mcnemar_no_difference_is_not_significant():
    assert mcnemar(0, 0)["p_value"] == 1.0
    assert mcnemar(20, 20)["p_value"] > 0.8
    assert math.isclose(mcnemar(30, 30)["statistic"], 1 / 60)
