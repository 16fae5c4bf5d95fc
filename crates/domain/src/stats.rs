//! Statistics for comparing fine-tuning methods with honest uncertainty: means, sample
//! standard deviations, Student-t and percentile-bootstrap intervals, paired differences
//! over seeds, and arena-style rank groups that never claim an order the data does not
//! support.
//!
//! Everything is pure and deterministic. The bootstrap uses [`SplitMix64`], specified
//! exactly so that a Python script can reproduce it bit for bit
//! (`tools/reference/stats/make_fixtures.py` does, and `tests/stats_reference.rs` checks
//! every function here against SciPy and NumPy).

use serde::{Deserialize, Serialize};

/// The confidence level used when none is given.
pub const DEFAULT_LEVEL: f64 = 0.95;
/// The number of bootstrap resamples used when none is given.
pub const DEFAULT_RESAMPLES: usize = 2000;

// ---------------------------------------------------------------------------------------
// Student's t quantile
// ---------------------------------------------------------------------------------------

/// Inverse CDF of Student's t with `df` > 0 degrees of freedom (not necessarily an
/// integer), `p` in (0, 1): the `t` with `P(T <= t) = p`.
///
/// Symmetric (`t_quantile(1 - p, df) == -t_quantile(p, df)`), 0 at `p = 0.5`, `-inf`/`inf`
/// at `p = 0`/`1`, NaN for `p` outside `[0, 1]`, NaN for `df` that is not a finite positive
/// number. Relative error below 1e-12 against SciPy for `df` in 1..=200 and `p` in
/// `[1e-4, 1 - 1e-4]` (checked in `tests/stats_reference.rs`); `df` = 1 and 2 use their
/// closed forms.
///
/// Method: the CDF is written with the regularized incomplete beta function (continued
/// fraction, Numerical Recipes' `betacf`), splitting it into a central part
/// `C(t) = P(|T| < t) = I_{t²/(df+t²)}(1/2, df/2)` and a tail `Q(t) = P(T > t) =
/// I_{df/(df+t²)}(df/2, 1/2) / 2` so neither is computed as a difference of nearly equal
/// numbers, and the equation is solved for `ln t` by Newton's method inside a bracket
/// (falling back to bisection), which keeps the relative error small from `t ≈ 0` to the
/// enormous quantiles of `df < 1`.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) || !(df > 0.0 && df.is_finite()) {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    // The tail mass P(T > |t|) and the central mass P(|T| < |t|), without forming 1 - p
    // for p < 0.5 (which would round): both are exact for p >= 0.25.
    let (sign, tail, central) = if p < 0.5 { (-1.0, p, (0.5 - p) * 2.0) } else { (1.0, 1.0 - p, (p - 0.5) * 2.0) };
    if tail == 0.0 {
        return sign * f64::INFINITY;
    }
    sign * t_upper_quantile(central, tail, df)
}

/// The `t > 0` with `C(t) = central` and `Q(t) = tail` (`central + 2 tail = 1`).
fn t_upper_quantile(central: f64, tail: f64, df: f64) -> f64 {
    if df == 1.0 {
        // Cauchy: t = tan(pi (p - 1/2)) = 1 / tan(pi (1 - p)).
        return if central <= 0.5 { (std::f64::consts::FRAC_PI_2 * central).tan() } else { 1.0 / (std::f64::consts::PI * tail).tan() };
    }
    if df == 2.0 {
        // t = (2p - 1) / sqrt(2 p (1 - p)).
        return central / (2.0 * tail * (1.0 - tail)).sqrt();
    }
    let a = df / 2.0;
    // ln of the density's constant c = Γ((df+1)/2) / (sqrt(df π) Γ(df/2)).
    let ln_c = ln_gamma_ratio(a, 0.5) - 0.5 * (df * std::f64::consts::PI).ln();
    // Bracket in s = ln t. The density is at most c, so C(t) <= 2 c t: the root is at
    // least central / (2c). And f(t) <= c (t²/df)^(-(df+1)/2), so Q(t) <= K t^(-df) with
    // K = c df^((df-1)/2): the root is at most (K / tail)^(1/df).
    let mut lo = central.ln() - std::f64::consts::LN_2 - ln_c;
    let mut hi = (ln_c + 0.5 * (df - 1.0) * df.ln() - tail.ln()) / df;
    if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
        // Rounding at the extremes (or a NaN bound): widen a little.
        let mid = 0.5 * (lo + hi);
        lo = mid - 1.0;
        hi = mid + 1.0;
    }
    // g(s) is increasing in s with g(root) = 0; g'(s) > 0.
    let use_central = central <= 0.5;
    let target = if use_central { central.ln() } else { tail.ln() };
    let eval = |s: f64| -> (f64, f64) {
        let (ln_central, ln_tail, ln_tf) = t_cdf_parts_ln(s, df, ln_c);
        if use_central {
            // d/ds ln C(e^s) = 2 t f(t) / C(t)
            (ln_central - target, (std::f64::consts::LN_2 + ln_tf - ln_central).exp())
        } else {
            // d/ds (-ln Q(e^s)) = t f(t) / Q(t)
            (target - ln_tail, (ln_tf - ln_tail).exp())
        }
    };
    let mut s = if use_central { lo } else { hi };
    for _ in 0..400 {
        let (g, dg) = eval(s);
        if g == 0.0 {
            break;
        }
        if g < 0.0 {
            lo = s;
        } else {
            hi = s;
        }
        let newton = s - g / dg;
        let next = if newton.is_finite() && newton > lo && newton < hi { newton } else { 0.5 * (lo + hi) };
        let step = next - s;
        s = next;
        if step.abs() <= 1e-15 * s.abs().max(1.0) || hi - lo <= 1e-15 * s.abs().max(1.0) {
            break;
        }
    }
    s.exp()
}

/// For `t = e^s`: `(ln C(t), ln Q(t), ln (t f(t)))` with `C(t) = P(|T| < t)`,
/// `Q(t) = P(T > t)` and `f` the density.
fn t_cdf_parts_ln(s: f64, df: f64, ln_c: f64) -> (f64, f64, f64) {
    // v = ln(t²/df); x = t²/(df+t²) and y = 1 - x = df/(df+t²) straight from logs, so
    // that neither tiny nor enormous t over- or underflows, and ln y = -ln(1 + t²/df) keeps
    // its relative accuracy when t² << df (it is multiplied by df/2 below).
    let v = 2.0 * s - df.ln();
    let ln_1p_t2 = ln_1p_exp(v); // ln(1 + t²/df)
    let ln_x = -ln_1p_exp(-v); // -ln(1 + df/t²)
    let ln_y = -ln_1p_t2;
    let (ln_central, ln_ytail) = ln_inc_beta_both(0.5, df / 2.0, ln_x, ln_y);
    let ln_tail = ln_ytail - std::f64::consts::LN_2;
    // f(t) = c (1 + t²/df)^(-(df+1)/2)
    let ln_tf = s + ln_c - 0.5 * (df + 1.0) * ln_1p_t2;
    (ln_central, ln_tail, ln_tf)
}

/// `ln(1 + e^v)` without overflow.
fn ln_1p_exp(v: f64) -> f64 {
    if v > 36.0 {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    }
}

/// `(ln I_x(a, b), ln I_y(b, a))` for `y = 1 - x`, given `ln x` and `ln y`: the regularized
/// incomplete beta function and its complement. The one whose continued fraction converges
/// fast (`I_x(a, b)` when `x < (a+1)/(a+b+2)`, else `I_y(b, a)`) is computed directly, the
/// other as `ln(1 - ·)` of it. The callers only rely on the complement where it is not
/// small, so the subtraction costs at most a few bits.
fn ln_inc_beta_both(a: f64, b: f64, ln_x: f64, ln_y: f64) -> (f64, f64) {
    let x = ln_x.exp();
    let y = ln_y.exp();
    // ln of x^a y^b / B(a, b)
    let ln_inv_beta = if a >= b { ln_gamma_ratio(a, b) - ln_gamma(b) } else { ln_gamma_ratio(b, a) - ln_gamma(a) };
    let ln_front = ln_inv_beta + a * ln_x + b * ln_y;
    // Past the usual switch point, `y` is close to 1 when `b` is huge (df > 1e6), and the
    // continued fraction in `y` loses ~ulp/x of relative accuracy; the one in `x` still
    // converges (in about `b x` steps), so keep it while that is cheap.
    if x < (a + 1.0) / (a + b + 2.0) || (x <= 1e-3 && b * x <= 20.0) {
        let ln_ix = ln_front + betacf(a, b, x).ln() - a.ln();
        (ln_ix, ln_1m_exp(ln_ix))
    } else {
        let ln_iy = ln_front + betacf(b, a, y).ln() - b.ln();
        (ln_1m_exp(ln_iy), ln_iy)
    }
}

/// `ln(1 - e^v)` for `v <= 0`, accurate near both ends.
fn ln_1m_exp(v: f64) -> f64 {
    if v > -std::f64::consts::LN_2 {
        (-v.exp_m1()).ln()
    } else {
        (-v.exp()).ln_1p()
    }
}

/// Continued fraction for the incomplete beta function (Numerical Recipes' `betacf`,
/// modified Lentz's method).
fn betacf(a: f64, b: f64, x: f64) -> f64 {
    const FPMIN: f64 = 1e-300;
    const EPS: f64 = 3e-16;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < FPMIN {
        d = FPMIN;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..100_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = 1.0 + aa / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = 1.0 + aa / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() <= EPS {
            break;
        }
    }
    h
}

/// `ln Γ(a + b) - ln Γ(a)` for `0 < b <= a`, without the cancellation of two large
/// logarithms when `a` is large (Stirling's series for the difference).
fn ln_gamma_ratio(a: f64, b: f64) -> f64 {
    if a < 20.0 {
        return ln_gamma(a + b) - ln_gamma(a);
    }
    // ln Γ(x) = (x - 1/2) ln x - x + ln(2π)/2 + corr(x), with corr's error below
    // 1/(1188 x⁹) < 2e-15 for x >= 20.
    let corr = |x: f64| {
        let x2 = 1.0 / (x * x);
        (1.0 / 12.0 - x2 * (1.0 / 360.0 - x2 * (1.0 / 1260.0 - x2 / 1680.0))) / x
    };
    (a + b - 0.5) * (b / a).ln_1p() + b * a.ln() - b + (corr(a + b) - corr(a))
}

/// `ln Γ(x)` for `x > 0`: the Lanczos approximation of Numerical Recipes (3rd ed.,
/// `gammln`), relative error about 1e-15. The coefficients are the published ones, digit
/// for digit (f64 rounds the last ones away).
#[allow(clippy::excessive_precision)]
fn ln_gamma(x: f64) -> f64 {
    const COF: [f64; 14] = [
        57.156_235_665_862_923_5,
        -59.597_960_355_475_491_2,
        14.136_097_974_741_747_1,
        -0.491_913_816_097_620_199,
        0.339_946_499_848_118_887e-4,
        0.465_236_289_270_485_756e-4,
        -0.983_744_753_048_795_646e-4,
        0.158_088_703_224_912_494e-3,
        -0.210_264_441_724_104_883e-3,
        0.217_439_618_115_212_643e-3,
        -0.164_318_106_536_763_890e-3,
        0.844_182_239_838_527_433e-4,
        -0.261_908_384_015_814_087e-4,
        0.368_991_826_595_316_234e-5,
    ];
    let mut y = x;
    let tmp = x + 5.242_187_5; // 671/128
    let tmp = (x + 0.5) * tmp.ln() - tmp;
    let mut ser = 0.999_999_999_999_997_092;
    for c in COF {
        y += 1.0;
        ser += c / y;
    }
    tmp + (2.506_628_274_631_000_5 * ser / x).ln()
}

// ---------------------------------------------------------------------------------------
// Descriptive statistics and intervals
// ---------------------------------------------------------------------------------------

/// Arithmetic mean; `None` on an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation (`ddof = 1`, two-pass); `None` when there are fewer than 2
/// values.
pub fn sample_std(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

/// How an [`Interval`] was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// `mean ± t · s / sqrt(n)` over independent values (e.g. one score per seed).
    StudentT,
    /// Percentile bootstrap over examples.
    Bootstrap,
}

/// A two-sided confidence interval `[lo, hi]` at `level` (e.g. 0.95).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
    pub method: IntervalMethod,
}

impl Interval {
    /// Whether `x` lies outside `[lo, hi]` (an interval of a difference that excludes 0
    /// is a significant difference).
    pub fn excludes(&self, x: f64) -> bool {
        x < self.lo || x > self.hi
    }

    /// `(hi - lo) / 2`.
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

fn valid_level(level: f64) -> bool {
    level > 0.0 && level < 1.0
}

/// Student-t interval for the mean: `mean ± t_{(1+level)/2, n-1} · s / sqrt(n)` (SciPy's
/// `stats.t.interval(level, n - 1, loc=mean, scale=sem)`). `None` when `n < 2` or `level`
/// is not in (0, 1).
pub fn t_interval(xs: &[f64], level: f64) -> Option<Interval> {
    if xs.len() < 2 || !valid_level(level) {
        return None;
    }
    let m = mean(xs)?;
    let s = sample_std(xs)?;
    let n = xs.len() as f64;
    let half = t_quantile((1.0 + level) / 2.0, n - 1.0) * (s / n.sqrt());
    Some(Interval { lo: m - half, hi: m + half, level, method: IntervalMethod::StudentT })
}

// ---------------------------------------------------------------------------------------
// Bootstrap
// ---------------------------------------------------------------------------------------

/// A small deterministic generator, specified exactly so other languages can replicate it:
/// SplitMix64 (`state += 0x9E3779B97F4A7C15; z = state; z = (z ^ (z >> 30)) *
/// 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^ (z >> 31)`, all
/// wrapping 64-bit arithmetic), and [`below`](Self::below)`(n) = ((next_u64() as u128 *
/// n as u128) >> 64) as usize` (Lemire's multiply-shift, without rejection: the bias is
/// below n / 2⁶⁴).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n == 0`); consumes one [`next_u64`](Self::next_u64).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Percentile bootstrap over `n` examples: `resamples` times, draw `n` indices with
/// replacement (row by row from one `SplitMix64::new(seed)` stream: index `j` of resample
/// `r` is the `(r * n + j)`-th [`below`](SplitMix64::below)`(n)`), evaluate `stat` on the
/// index vector, drop non-finite values, and take the `(1 - level)/2` and `(1 + level)/2`
/// percentiles with linear interpolation (NumPy's default `np.percentile` /
/// `np.quantile` method, replicated to the last bit).
///
/// `stat` sees indices into the caller's data, so a paired statistic (the difference of
/// two methods on the same examples) uses the same resampled examples for both sides.
/// `None` when `n == 0`, `resamples == 0`, `level` is not in (0, 1), or no value is finite.
pub fn bootstrap_interval(n: usize, resamples: usize, seed: u64, level: f64, mut stat: impl FnMut(&[usize]) -> f64) -> Option<Interval> {
    if n == 0 || resamples == 0 || !valid_level(level) {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut idx = vec![0usize; n];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in idx.iter_mut() {
            *slot = rng.below(n);
        }
        let v = stat(&idx);
        if v.is_finite() {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let lo = quantile_linear(&values, (1.0 - level) / 2.0);
    let hi = quantile_linear(&values, (1.0 + level) / 2.0);
    Some(Interval { lo, hi, level, method: IntervalMethod::Bootstrap })
}

/// NumPy's `quantile(sorted, q, method="linear")` on a sorted, non-empty slice, with
/// NumPy's exact arithmetic (`(n-1) q`, its clamping, and its two-sided `_lerp`).
fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virtual_index = (n - 1) as f64 * q;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let prev = virtual_index.floor();
    let t = virtual_index - prev;
    let i = prev as usize;
    let (a, b) = (sorted[i], sorted[i + 1]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

// ---------------------------------------------------------------------------------------
// Summaries, paired differences, rank groups
// ---------------------------------------------------------------------------------------

/// A sample of per-seed values: its size, mean, sample standard deviation (`None` when
/// `n < 2`) and Student-t interval for the mean (`None` when `n < 2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std: Option<f64>,
    pub interval: Option<Interval>,
}

/// Summarizes a sample (see [`Summary`]); `None` when it is empty. `level` is the
/// interval's confidence level (the interval is `None` when `level` is not in (0, 1)).
pub fn summarize(xs: &[f64], level: f64) -> Option<Summary> {
    Some(Summary { n: xs.len(), mean: mean(xs)?, std: sample_std(xs), interval: t_interval(xs, level) })
}

/// The paired differences `a[i] - b[i]` (e.g. a method minus LoRA, seed by seed)
/// summarized: the interval is the paired-t interval (SciPy's
/// `ttest_rel(a, b).confidence_interval(level)`). `None` if the lengths differ or are 0.
pub fn paired_difference(a: &[f64], b: &[f64], level: f64) -> Option<Summary> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    summarize(&d, level)
}

/// Arena-style rank groups. Entry `i`'s rank is 1 + the number of entries that are
/// significantly better than it, i.e. whose interval lies entirely above `i`'s interval
/// (entirely below, when lower is better; touching intervals overlap). An entry without
/// an interval uses `[mean, mean]`. So every entry whose interval overlaps the leader's
/// gets rank 1, and the ranks never claim an order the data does not support. An entry
/// whose mean or bounds are NaN counts as the worst possible value.
pub fn rank_groups(entries: &[(f64, Option<Interval>)], higher_is_better: bool) -> Vec<usize> {
    // Orient so that larger is better: (lo, hi) of the oriented interval.
    let worst = f64::NEG_INFINITY;
    let oriented: Vec<(f64, f64)> = entries
        .iter()
        .map(|(m, iv)| {
            let (lo, hi) = match iv {
                Some(iv) => (iv.lo, iv.hi),
                None => (*m, *m),
            };
            let (lo, hi) = if higher_is_better { (lo, hi) } else { (-hi, -lo) };
            if m.is_nan() || lo.is_nan() || hi.is_nan() {
                (worst, worst)
            } else {
                (lo, hi)
            }
        })
        .collect();
    oriented.iter().map(|&(_, hi_i)| 1 + oriented.iter().filter(|&&(lo_j, _)| lo_j > hi_i).count()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs().max(1e-300), "got {got}, want {want}");
    }

    #[test]
    fn ln_gamma_known_values() {
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-14);
        close(ln_gamma(10.0), 362_880f64.ln(), 1e-14);
        close(ln_gamma(1.5), (std::f64::consts::PI.sqrt() / 2.0).ln(), 1e-13);
        assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14);
    }

    #[test]
    fn ln_gamma_ratio_is_continuous_and_accurate() {
        // Both sides of the switch to Stirling's series agree with the direct difference.
        for a in [19.999, 20.0, 20.001, 35.5, 100.0] {
            for b in [0.5, 1.0, 3.25] {
                close(ln_gamma_ratio(a, b), ln_gamma(a + b) - ln_gamma(a), 1e-13);
            }
        }
        // Γ(a + 1) / Γ(a) = a, for any size of a.
        for a in [25.0, 1e3, 1e6, 1e12] {
            close(ln_gamma_ratio(a, 1.0), f64::ln(a), 1e-15);
        }
    }

    #[test]
    fn t_quantile_large_df_tends_to_the_normal() {
        // z_{0.975} = 1.959963984540054; t_{0.975, df} = z + (z³ + z) / (4 df) + O(1/df²).
        let z = 1.959_963_984_540_054;
        for df in [1e6, 1e8, 1e10] {
            let want = z + (z * z * z + z) / (4.0 * df);
            close(t_quantile(0.975, df), want, 1e-11);
        }
    }

    #[test]
    fn t_quantile_known_values_and_edges() {
        // Textbook table values, and the closed forms.
        close(t_quantile(0.975, 1.0), 12.706_204_736_174_7, 1e-12);
        close(t_quantile(0.975, 2.0), 4.302_652_729_749_464, 1e-12);
        close(t_quantile(0.975, 4.0), 2.776_445_105_197_793, 1e-12);
        close(t_quantile(0.975, 9.0), 2.262_157_162_798_205, 1e-12);
        close(t_quantile(0.95, 30.0), 1.697_260_886_593_78, 1e-12);
        assert_eq!(t_quantile(0.5, 7.0), 0.0);
        assert_eq!(t_quantile(1.0, 3.0), f64::INFINITY);
        assert_eq!(t_quantile(0.0, 3.0), f64::NEG_INFINITY);
        assert!(t_quantile(1.5, 3.0).is_nan() && t_quantile(-0.1, 3.0).is_nan() && t_quantile(f64::NAN, 3.0).is_nan());
        assert!(t_quantile(0.9, 0.0).is_nan() && t_quantile(0.9, -1.0).is_nan() && t_quantile(0.9, f64::INFINITY).is_nan());
        for df in [0.3, 1.0, 2.0, 3.5, 10.0, 150.0] {
            for p in [0.001, 0.2, 0.4999] {
                close(t_quantile(p, df), -t_quantile(1.0 - p, df), 1e-12);
            }
        }
        // Monotone in p, and in df (heavier tails for fewer degrees of freedom).
        let mut last = f64::NEG_INFINITY;
        for i in 1..1000 {
            let q = t_quantile(i as f64 / 1000.0, 5.5);
            assert!(q > last);
            last = q;
        }
        assert!(t_quantile(0.975, 3.0) > t_quantile(0.975, 4.0));
        // Tiny df: enormous but finite quantiles.
        let q = t_quantile(0.999, 0.1);
        assert!(q.is_finite() && q > 1e20, "{q}");
    }

    #[test]
    fn mean_and_std_edges() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[3.0]), Some(3.0));
        assert_eq!(sample_std(&[3.0]), None);
        assert_eq!(sample_std(&[]), None);
        assert_eq!(sample_std(&[2.0, 2.0, 2.0]), Some(0.0));
        close(sample_std(&[1.0, 2.0, 3.0, 4.0]).unwrap(), (5.0f64 / 3.0).sqrt(), 1e-15);
    }

    #[test]
    fn t_interval_edges() {
        assert_eq!(t_interval(&[], 0.95), None);
        assert_eq!(t_interval(&[1.0], 0.95), None);
        assert_eq!(t_interval(&[1.0, 2.0], 1.0), None);
        assert_eq!(t_interval(&[1.0, 2.0], 0.0), None);
        let iv = t_interval(&[5.0, 5.0, 5.0], 0.95).unwrap();
        assert_eq!((iv.lo, iv.hi), (5.0, 5.0));
        let iv = t_interval(&[1.0, 3.0], 0.95).unwrap();
        // mean 2, s = sqrt 2, sem = 1, t = 12.706...
        close(iv.half_width(), 12.706_204_736_174_7, 1e-12);
        assert_eq!(iv.method, IntervalMethod::StudentT);
        assert!(iv.excludes(15.0) && iv.excludes(-11.0) && !iv.excludes(2.0) && !iv.excludes(iv.lo));
        let narrow = t_interval(&[1.0, 3.0], 0.5).unwrap();
        assert!(narrow.half_width() < iv.half_width());
    }

    #[test]
    fn splitmix64_known_sequence() {
        // The reference outputs of SplitMix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        let mut r = SplitMix64::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert_eq!(SplitMix64::new(1).below(0), 0);
        assert_eq!(SplitMix64::new(1).below(1), 0);
    }

    #[test]
    fn bootstrap_edges() {
        assert_eq!(bootstrap_interval(0, 100, 1, 0.95, |_| 1.0), None);
        assert_eq!(bootstrap_interval(10, 0, 1, 0.95, |_| 1.0), None);
        assert_eq!(bootstrap_interval(10, 100, 1, 1.0, |_| 1.0), None);
        assert_eq!(bootstrap_interval(10, 100, 1, 0.95, |_| f64::NAN), None);
        // A constant statistic gives a point interval; one example gives its own value.
        let iv = bootstrap_interval(10, 100, 1, 0.95, |_| 0.25).unwrap();
        assert_eq!((iv.lo, iv.hi, iv.method), (0.25, 0.25, IntervalMethod::Bootstrap));
        let xs = [0.7];
        let iv = bootstrap_interval(1, 50, 3, 0.9, |idx| idx.iter().map(|&i| xs[i]).sum::<f64>()).unwrap();
        assert_eq!((iv.lo, iv.hi), (0.7, 0.7));
        // Non-finite values are dropped, not propagated.
        let mut k = 0;
        let iv = bootstrap_interval(5, 100, 1, 0.95, |_| {
            k += 1;
            if k % 2 == 0 {
                f64::INFINITY
            } else {
                1.0
            }
        })
        .unwrap();
        assert_eq!((iv.lo, iv.hi), (1.0, 1.0));
        // Deterministic in the seed; the interval contains the sample mean.
        let data: Vec<f64> = (0..100).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
        let stat = |idx: &[usize]| idx.iter().map(|&i| data[i]).sum::<f64>() / idx.len() as f64;
        let a = bootstrap_interval(100, 500, 9, 0.95, stat).unwrap();
        let b = bootstrap_interval(100, 500, 9, 0.95, stat).unwrap();
        assert_eq!(a, b);
        assert!(a.lo < 0.34 && 0.34 < a.hi && a.hi - a.lo < 0.3);
    }

    #[test]
    fn quantile_linear_matches_numpy_rules() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_linear(&v, 0.0), 1.0);
        assert_eq!(quantile_linear(&v, 1.0), 8.0);
        assert_eq!(quantile_linear(&v, 0.5), 3.0);
        close(quantile_linear(&v, 0.9), 4.0 + 0.7 * 4.0, 1e-15);
        assert_eq!(quantile_linear(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn summarize_and_paired_edges() {
        assert_eq!(summarize(&[], 0.95), None);
        let s = summarize(&[0.8], 0.95).unwrap();
        assert_eq!((s.n, s.mean, s.std, s.interval), (1, 0.8, None, None));
        let s = summarize(&[0.8, 0.9], 0.95).unwrap();
        assert_eq!(s.n, 2);
        assert!(s.std.is_some() && s.interval.is_some());
        assert_eq!(paired_difference(&[1.0], &[1.0, 2.0], 0.95), None);
        assert_eq!(paired_difference(&[], &[], 0.95), None);
        let d = paired_difference(&[0.9, 0.8, 0.85], &[0.8, 0.7, 0.75], 0.95).unwrap();
        close(d.mean, 0.1, 1e-12);
        assert!(d.std.unwrap() < 1e-12);
        // Constant improvement over seeds: significant however noisy each method is.
        assert!(d.interval.unwrap().excludes(0.0));
        let d = paired_difference(&[0.9, 0.7, 0.85], &[0.8, 0.75, 0.86], 0.95).unwrap();
        assert!(!d.interval.unwrap().excludes(0.0));
    }

    fn iv(lo: f64, hi: f64) -> Option<Interval> {
        Some(Interval { lo, hi, level: 0.95, method: IntervalMethod::StudentT })
    }

    #[test]
    fn rank_groups_overlapping_and_separated() {
        assert!(rank_groups(&[], true).is_empty());
        // A leads; B overlaps A; C is below both; D overlaps C only.
        let entries = [(0.90, iv(0.88, 0.92)), (0.89, iv(0.86, 0.91)), (0.80, iv(0.78, 0.82)), (0.81, iv(0.79, 0.87))];
        assert_eq!(rank_groups(&entries, true), vec![1, 1, 3, 2]);
        // All overlapping: one group.
        let entries = [(0.5, iv(0.1, 0.9)), (0.6, iv(0.2, 0.95)), (0.4, iv(0.0, 0.8))];
        assert_eq!(rank_groups(&entries, true), vec![1, 1, 1]);
        // Touching intervals overlap.
        assert_eq!(rank_groups(&[(1.0, iv(0.5, 1.5)), (2.0, iv(1.5, 2.5))], true), vec![1, 1]);
        // Entries without an interval use [mean, mean].
        assert_eq!(rank_groups(&[(0.9, None), (0.5, None), (0.7, iv(0.4, 0.95))], true), vec![1, 2, 1]);
    }

    #[test]
    fn rank_groups_orientation() {
        // Fails if the orientation were inverted: the high-scoring entry must win for
        // higher-is-better, the low one (a loss) for lower-is-better.
        let entries = [(0.2, iv(0.1, 0.3)), (0.9, iv(0.8, 1.0))];
        assert_eq!(rank_groups(&entries, true), vec![2, 1]);
        assert_eq!(rank_groups(&entries, false), vec![1, 2]);
        let losses = [(2.5, iv(2.4, 2.6)), (1.2, iv(1.1, 1.3)), (1.25, iv(1.0, 1.5)), (3.0, None)];
        assert_eq!(rank_groups(&losses, false), vec![3, 1, 1, 4]);
        // NaN is the worst value in either orientation.
        let with_nan = [(f64::NAN, None), (0.5, None)];
        assert_eq!(rank_groups(&with_nan, true), vec![2, 1]);
        assert_eq!(rank_groups(&with_nan, false), vec![2, 1]);
    }

    #[test]
    fn serde_shapes() {
        let s = summarize(&[1.0, 2.0, 3.0], 0.95).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["n"], 3);
        assert_eq!(v["interval"]["method"], "student_t");
        assert_eq!(serde_json::from_value::<Summary>(v).unwrap(), s);
        assert_eq!(serde_json::to_value(IntervalMethod::Bootstrap).unwrap(), "bootstrap");
    }
}
