//! `exp`, `erf`, GELU and softmax, branch-free so that they vectorise.

use rayon::prelude::*;

/// Elements per parallel task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// e^x to about 2 ulp for x in [-87.3, 88.7] (clamped above it, 0 below, where e^x
/// would be denormal), by Cody and Waite's range reduction x = n ln2 + r and Cephes'
/// degree-5 minimax polynomial for e^r.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MIN_X: f32 = -87.336_54;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let below = x < MIN_X;
    let x = x.clamp(MIN_X, 88.722_83);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n from n's integer bits, with the exponent bias: no float-to-int conversion.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let e = er * f32::from_bits(((n_bits + 127) as u32) << 23);
    // A masked score (-1e30) must give exactly 0, as libm's exp does: a tiny weight
    // would leak denormals into the backward pass, which slow every product they enter.
    if below {
        0.0
    } else {
        e
    }
}

/// erf(x) to within 2e-7: its Taylor series (11 terms) below |x| = 1, where the
/// other form would cancel, and Abramowitz and Stegun 7.1.26 above (the approximation
/// PyTorch's vectorised CPU `erf` uses everywhere). Both are computed and one selected,
/// which keeps the loop branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // 2/sqrt(pi) (-1)^n / (n! (2n+1)): erf(x) = x * sum_n c_n x^(2n).
    const TAYLOR: [f32; 11] = [
        std::f32::consts::FRAC_2_SQRT_PI,
        -0.376_126_38,
        0.112_837_92,
        -2.686_617e-2,
        5.223_977_6e-3,
        -8.548_327e-4,
        1.205_533_3e-4,
        -1.492_565e-5,
        1.646_211_4e-6,
        -1.636_584_5e-7,
        1.480_719_3e-8,
    ];
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let x2 = x * x;
    let mut series = TAYLOR[10];
    for c in TAYLOR[..10].iter().rev() {
        series = series * x2 + c;
    }
    let near = x * series;
    let t = 1.0 / (1.0 + P * ax);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let far = (1.0 - poly * exp(-x2)).copysign(x);
    if ax < 1.0 {
        near
    } else {
        far
    }
}

/// GELU with the exact (erf) form, `0.5 x (1 + erf(x / sqrt 2))`: BLIP's "gelu".
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

multiversion! {
    fn gelu_serial(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = gelu(*x);
        }
    }
}

/// GELU in place, split over the thread pool.
pub fn gelu_in_place(xs: &mut [f32]) {
    xs.par_chunks_mut(CHUNK).for_each(gelu_serial);
}

/// Softmax of one row in place (inlined into the caller's vectorised code).
#[inline(always)]
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Lanes of partial sums vectorise; one running sum would stay sequential.
    let mut lanes = [0f32; 16];
    for chunk in row.chunks_mut(16) {
        for (x, lane) in chunk.iter_mut().zip(lanes.iter_mut()) {
            *x = exp(*x - max);
            *lane += *x;
        }
    }
    let inv = 1.0 / lanes.iter().sum::<f32>();
    for x in row.iter_mut() {
        *x *= inv;
    }
}

multiversion! {
    /// Softmax of one row in place.
    pub fn softmax_row(row: &mut [f32]) {
        softmax_in_place(row)
    }
}

/// Softmax over the rows of `xs` (`[rows, width]`, row-major) in place.
pub fn softmax_rows(xs: &mut [f32], width: usize) {
    xs.chunks_mut(width).for_each(softmax_row);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i32).abs_diff(b.to_bits() as i32)
    }

    #[test]
    fn exp_within_a_few_ulp_of_libm() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = ulps(exp(x), (x as f64).exp() as f32);
            worst = worst.max(e);
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_and_gelu_match_the_exact_functions() {
        let mut x = -6.0f64;
        while x < 6.0 {
            // erf(x) as the series / continued fraction is long: use f64 libm through gelu's identity.
            let exact_gelu = 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
            let got = gelu(x as f32) as f64;
            assert!(
                (got - exact_gelu).abs() <= 1e-6 * (1.0 + x.abs()),
                "gelu({x}) = {got}, exact {exact_gelu}"
            );
            let e = (erf(x as f32) as f64 - libm_erf(x as f32 as f64)).abs();
            assert!(e <= 2e-7, "erf({x}) off by {e}");
            x += 0.001_3;
        }
    }

    /// erf in f64 by its Taylor series (|x| < 3) or its asymptotic continued fraction.
    fn libm_erf(x: f64) -> f64 {
        let ax = x.abs();
        let v = if ax < 3.0 {
            let mut term = ax;
            let mut sum = ax;
            let mut n = 0.0;
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -ax * ax / n;
                sum += term / (2.0 * n + 1.0);
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
            let mut f = ax;
            for k in (1..60).rev() {
                f = ax + (k as f64 / 2.0) / f;
            }
            1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f
        };
        v.copysign(x)
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_the_definition() {
        let width = 37;
        let mut xs: Vec<f32> = (0..3 * width)
            .map(|i| ((i * 7919) % 101) as f32 / 9.0 - 5.0)
            .collect();
        let reference: Vec<f64> = xs
            .chunks(width)
            .flat_map(|row| {
                let m = row.iter().copied().fold(f32::MIN, f32::max) as f64;
                let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / s)
            })
            .collect();
        softmax_rows(&mut xs, width);
        for (a, b) in xs.iter().zip(&reference) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }
}
