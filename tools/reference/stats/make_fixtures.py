#!/usr/bin/env python3
"""Writes crates/domain/tests/fixtures/stats.json: reference values for rankfit's statistics
(crates/domain/src/stats.rs), checked by crates/domain/tests/stats_reference.rs.

Computed with SciPy, NumPy and mpmath (generated with scipy 1.17.1, numpy 2.4.6 and
mpmath 1.3.0 on Python 3.11.7; the versions used are also recorded in the file):
  Student-t quantiles                scipy.stats.t.ppf(p, df), and the exact value: the root,
                                     found by mpmath at 50 digits, of the t CDF written with
                                     mpmath.betainc. SciPy's ppf (Boost's quantile) is off
                                     near p = 0.5 (e.g. p = 0.5000001, df = 4: relative error
                                     4e-4; p = 0.4999, df = 4: 1.6e-9), so both are stored.
  t intervals                        scipy.stats.t.interval(level, n - 1, loc=mean, scale=sem)
  paired differences                 numpy (mean, std ddof=1 of a - b) and
                                     scipy.stats.ttest_rel(a, b).confidence_interval(level)
  percentile bootstrap               SplitMix64 and below() replicated below, bit for bit,
                                     and numpy.quantile(values, q, method="linear") (the same
                                     method as numpy.percentile's default, without the /100)

Usage (from the repository root):
    pip install scipy numpy mpmath
    python3 tools/reference/stats/make_fixtures.py

Deterministic: every input is fixed (the 0/1 correctness vectors come from SplitMix64 with
fixed seeds), so re-running with the same library versions rewrites the same file.
"""

import json
import os
import sys

import mpmath
import numpy as np
import scipy
from scipy import stats

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = os.path.join(ROOT, "crates", "domain", "tests", "fixtures", "stats.json")

MASK = (1 << 64) - 1


class SplitMix64:
    """rankfit_domain::stats::SplitMix64, exactly."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next_u64() * n) >> 64


def exact_t_quantile(p, df):
    """The t quantile to ~45 significant digits (then rounded to a float)."""
    if p == 0.5:
        return 0.0
    with mpmath.workdps(50):
        prob, d, half = mpmath.mpf(p), mpmath.mpf(df), mpmath.mpf(1) / 2
        sign, tail = (-1, prob) if prob < half else (1, 1 - prob)  # exact: mpf has 50 digits
        central = 1 - 2 * tail
        if central <= half:
            def g(t):
                return mpmath.betainc(half, d / 2, 0, t * t / (d + t * t), regularized=True) - central
        else:
            def g(t):
                return mpmath.betainc(d / 2, half, 0, d / (d + t * t), regularized=True) / 2 - tail
        start = mpmath.mpf(abs(float(stats.t.ppf(p, df))))
        t = mpmath.findroot(g, (start * (1 - mpmath.mpf("1e-3")), start * (1 + mpmath.mpf("1e-3"))), solver="secant",
                            tol=mpmath.mpf(10) ** -45, maxsteps=200)
        assert abs(g(t)) < mpmath.mpf(10) ** -35 * min(central, tail), (p, df)
        return sign * float(t)


def t_quantiles():
    """[p, df, exact quantile, scipy's quantile]."""
    ps = [0.5, 0.5000001, 0.501, 0.51, 0.55, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999,
          0.9995, 0.0005, 0.001, 0.025, 0.05, 0.1, 0.25, 0.3, 0.4, 0.49, 0.4999]
    dfs = list(range(1, 31)) + list(range(35, 201, 5)) + [0.3, 0.5, 0.75, 1.5, 2.5, 3.7, 7.3, 12.5, 33.3, 99.9, 199.5]
    return [[p, float(df), exact_t_quantile(p, df), float(stats.t.ppf(p, df))] for df in dfs for p in ps]


T_SAMPLES = [
    [0.81, 0.84],
    [-1.2, 0.3, 2.5],
    [0.912, 0.905, 0.918],
    [85.2, 86.1, 84.7, 85.9, 85.0],
    [-0.031, 0.012, -0.004, 0.027, -0.019],
    [0.61, 0.64, 0.59, 0.66, 0.63, 0.60, 0.62, 0.65, 0.58, 0.67],
    [-3.5, 1.25, -0.75, 2.0, -1.5, 0.5, -2.25, 3.0, -0.25, 1.0],
    [1234.5, 1240.25, 1229.0, 1250.75],
]
LEVELS = [0.95, 0.9, 0.99, 0.5]


def t_intervals():
    out = []
    for xs in T_SAMPLES:
        a = np.array(xs, dtype=np.float64)
        for level in LEVELS:
            lo, hi = stats.t.interval(level, len(xs) - 1, loc=float(np.mean(a)), scale=float(stats.sem(a)))
            out.append({"xs": xs, "level": level, "mean": float(np.mean(a)), "std": float(np.std(a, ddof=1)),
                        "lo": float(lo), "hi": float(hi)})
    return out


PAIRS = [
    ([0.85, 0.87], [0.84, 0.83]),
    ([0.912, 0.905, 0.918], [0.901, 0.899, 0.910]),
    ([0.612, 0.633, 0.598, 0.641, 0.620], [0.600, 0.625, 0.605, 0.622, 0.611]),
    ([2.31, 2.28, 2.35, 2.30, 2.29], [2.40, 2.38, 2.36, 2.41, 2.39]),
    ([0.71, 0.74, 0.69, 0.73, 0.72, 0.70, 0.75, 0.68, 0.71, 0.73],
     [0.70, 0.72, 0.71, 0.70, 0.73, 0.69, 0.72, 0.70, 0.69, 0.74]),
]


def paired():
    out = []
    for a, b in PAIRS:
        aa, bb = np.array(a), np.array(b)
        d = aa - bb
        for level in [0.95, 0.9]:
            res = stats.ttest_rel(aa, bb)
            ci = res.confidence_interval(confidence_level=level)
            out.append({"a": a, "b": b, "level": level, "mean": float(np.mean(d)), "std": float(np.std(d, ddof=1)),
                        "lo": float(ci.low), "hi": float(ci.high)})
    return out


def correctness(seed, n, percent):
    """A fixed 0/1 vector: example i is right when below(100) < percent."""
    r = SplitMix64(seed)
    return [1 if r.below(100) < percent else 0 for _ in range(n)]


def bootstrap_indices(n, resamples, seed):
    r = SplitMix64(seed)
    return np.array([[r.below(n) for _ in range(n)] for _ in range(resamples)], dtype=np.int64)


def percentile_interval(values, level):
    values = values[np.isfinite(values)]
    lo = np.quantile(values, (1 - level) / 2, method="linear")
    hi = np.quantile(values, (1 + level) / 2, method="linear")
    return float(lo), float(hi)


def bootstrap():
    x = correctness(11, 150, 80)
    # b: a baseline; a: right wherever b is, plus some more, but wrong on a few b gets right.
    b = correctness(12, 150, 78)
    extra = correctness(13, 150, 30)
    drop = correctness(14, 150, 4)
    a = [1 if (bi and not di) or ei else 0 for bi, ei, di in zip(b, extra, drop)]
    means, diffs = [], []
    for seed, resamples, level in [(0, 2000, 0.95), (42, 2000, 0.95), (0x5EED, 2000, 0.9), (20240611, 500, 0.99),
                                   (7, 37, 0.95)]:
        idx = bootstrap_indices(len(x), resamples, seed)
        xv = np.array(x)
        lo, hi = percentile_interval(xv[idx].mean(axis=1), level)
        means.append({"seed": seed, "resamples": resamples, "level": level, "lo": lo, "hi": hi})
        av, bv = np.array(a), np.array(b)
        lo, hi = percentile_interval((av[idx] - bv[idx]).mean(axis=1), level)
        diffs.append({"seed": seed, "resamples": resamples, "level": level, "lo": lo, "hi": hi})
    return {"mean_of_correct": {"x": x, "cases": means}, "paired_difference": {"a": a, "b": b, "cases": diffs}}


def splitmix():
    out = []
    for seed in [0, 1, 0x5EED, MASK]:
        r = SplitMix64(seed)
        u64 = [str(r.next_u64()) for _ in range(5)]
        r = SplitMix64(seed)
        below = [[n, r.below(n)] for n in [1, 2, 3, 10, 150, 1000, 2**31 - 1, 2**40 + 7]]
        out.append({"seed": str(seed), "next_u64": u64, "below": below})
    return out


def main():
    data = {
        "generated_by": "tools/reference/stats/make_fixtures.py",
        "versions": {"python": sys.version.split()[0], "scipy": scipy.__version__, "numpy": np.__version__,
                     "mpmath": mpmath.__version__},
        "note": "u64 values are decimal strings (JSON numbers lose precision above 2^53); "
                "t_quantile rows are [p, df, exact (mpmath), scipy.stats.t.ppf]",
        "splitmix64": splitmix(),
        "t_quantile": t_quantiles(),
        "t_interval": t_intervals(),
        "paired_difference": paired(),
        "bootstrap": bootstrap(),
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(data['t_quantile'])} t quantiles, {len(data['t_interval'])} t intervals, "
          f"{len(data['paired_difference'])} paired differences, "
          f"{len(data['bootstrap']['mean_of_correct']['cases'])} + "
          f"{len(data['bootstrap']['paired_difference']['cases'])} bootstrap intervals")


if __name__ == "__main__":
    main()
