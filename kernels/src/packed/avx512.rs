//! The AVX-512 kernels: `MR` input rows by one panel, the sums held in registers.

use std::arch::x86_64::*;

use super::{GROUP, MR, NR};

macro_rules! dispatch {
    ($name:ident, $kernel:ident, $w:ty, $x:ty $(, $extra:ident: $et:ty)?) => {
        /// # Safety
        /// As the kernel's.
        pub(super) unsafe fn $name(
            m: usize,
            w: &[$w],
            x: &[$x],
            k: usize,
            $($extra: $et,)?
            acc: &mut [[f32; NR]; MR],
        ) {
            assert!(x.len() >= (m - 1) * k + k && m <= MR);
            let (w, x) = (w.as_ptr(), x.as_ptr());
            // SAFETY: forwarded from the caller; x holds m rows.
            unsafe {
                match m {
                    1 => $kernel::<1>(w, x, k, $($extra,)? acc),
                    2 => $kernel::<2>(w, x, k, $($extra,)? acc),
                    3 => $kernel::<3>(w, x, k, $($extra,)? acc),
                    4 => $kernel::<4>(w, x, k, $($extra,)? acc),
                    5 => $kernel::<5>(w, x, k, $($extra,)? acc),
                    6 => $kernel::<6>(w, x, k, $($extra,)? acc),
                    7 => $kernel::<7>(w, x, k, $($extra,)? acc),
                    _ => $kernel::<8>(w, x, k, $($extra,)? acc),
                }
            }
        }
    };
}

dispatch!(dispatch_bf16w, bf16_weights, u16, f32);
dispatch!(dispatch_vnni, vnni, i8, u8, sums: &[i32; NR]);
dispatch!(dispatch_bf16dot, bf16_dot, u16, u16);

/// Stores `M × 3` accumulators into the first `M` rows of `acc`.
#[inline(always)]
unsafe fn store<const M: usize>(regs: &[[__m512; 3]; M], acc: &mut [[f32; NR]; MR]) {
    for (row, r) in acc.iter_mut().zip(regs) {
        for (v, &reg) in r.iter().enumerate() {
            // SAFETY: 16 floats at 16 v lie in the row of NR = 48.
            unsafe { _mm512_storeu_ps(row.as_mut_ptr().add(16 * v), reg) };
        }
    }
}

/// `m` int14 input rows by one panel of 12-bit weights: [`int12_weights_m`] on all
/// of them at once, so that each weight is unpacked once.
///
/// # Safety
/// As [`int12_weights_m`].
pub(super) unsafe fn int12_weights(
    m: usize,
    (high, low): (&[i8], &[u8]),
    x: &[i16],
    k: usize,
    scales: &[f32],
    acc: &mut [[f32; NR]; MR],
) {
    assert!(m <= MR && x.len() >= m * k && k.is_multiple_of(4));
    assert!(high.len() >= NR * k && low.len() >= NR * k / 2);
    assert!(scales.len() >= k.div_ceil(GROUP) * NR);
    let (w, x) = ((high.as_ptr(), low.as_ptr()), x.as_ptr());
    macro_rules! rows {
        ($($m:literal)*) => {
            match (m, super::cpu().vnni) {
                // SAFETY: forwarded from the caller; x holds m rows.
                $(($m, true) => unsafe { int12_weights_vnni::<$m>(w, x, k, scales, acc) },)*
                $(($m, false) => unsafe { int12_weights_bw::<$m>(w, x, k, scales, acc) },)*
                _ => unreachable!("at most MR rows"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8);
}

/// `M` (at most `MR`) int14 input rows by one panel of 12-bit weights packed two inputs at
/// a time: 32 high bytes widened to int16 and shifted, their residual nibbles put in
/// the low bits, pairs of products summed into int32 by `vpdpwssd` (with VNNI) or
/// `vpmaddwd`, each group of `GROUP` inputs then added to the f32 sums in `acc` with
/// its scales. Two pairs of inputs a step, whose residuals one load brings.
///
/// # Safety
/// AVX-512F and BW (and VNNI when `VNNI`); `high` holds `NR × k` bytes and `low` half
/// as many, `x` `M` rows of `k` values (a multiple of 4), `scales` `NR` per group.
#[inline(always)]
unsafe fn int12_weights_m<const M: usize, const VNNI: bool>(
    (high, low): (*const i8, *const u8),
    x: *const i16,
    k: usize,
    scales: &[f32],
    acc: &mut [[f32; NR]; MR],
) {
    let mask = _mm512_set1_epi16(15);
    for g in 0..k.div_ceil(GROUP) {
        let mut dots = [[_mm512_setzero_si512(); 3]; M];
        for quad in g * GROUP / 4..((g + 1) * GROUP).min(k) / 4 {
            for v in 0..3 {
                // SAFETY: the two pairs' 2 × NR residual bytes lie in `low`.
                let bytes = unsafe { _mm256_loadu_si256(low.add(quad * 2 * NR + 32 * v).cast()) };
                let nibbles = _mm512_cvtepu8_epi16(bytes);
                let residual = [
                    _mm512_and_si512(nibbles, mask),
                    _mm512_srli_epi16::<4>(nibbles),
                ];
                for (h, &res) in residual.iter().enumerate() {
                    let at = (2 * quad + h) * 2 * NR + 32 * v;
                    // SAFETY: the pair's 2 × NR high bytes lie in `high`.
                    let bytes = unsafe { _mm256_loadu_si256(high.add(at).cast()) };
                    let wv =
                        _mm512_or_si512(_mm512_slli_epi16::<4>(_mm512_cvtepi8_epi16(bytes)), res);
                    for (i, d) in dots.iter_mut().enumerate() {
                        // SAFETY: row i has k values; two int16 read as one int32,
                        // broadcast from memory where the product reads it.
                        let two = unsafe {
                            x.add(i * k + 4 * quad + 2 * h)
                                .cast::<i32>()
                                .read_unaligned()
                        };
                        let xv = _mm512_set1_epi32(two);
                        d[v] = if VNNI {
                            // SAFETY: VNNI is present (the caller's contract).
                            unsafe { _mm512_dpwssd_epi32(d[v], xv, wv) }
                        } else {
                            _mm512_add_epi32(d[v], _mm512_madd_epi16(xv, wv))
                        };
                    }
                }
            }
        }
        for v in 0..3 {
            // SAFETY: AVX-512F is present; the group's NR scales lie in `scales`, and
            // 16 sums at 16 v in each row of NR.
            unsafe {
                let sv = _mm512_loadu_ps(scales[g * NR + 16 * v..][..16].as_ptr());
                for (row, d) in acc.iter_mut().zip(&dots) {
                    let at = row[16 * v..][..16].as_mut_ptr();
                    _mm512_storeu_ps(
                        at,
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[v]), sv, _mm512_loadu_ps(at)),
                    );
                }
            }
        }
    }
}

/// [`int12_weights_m`] with `vpdpwssd`.
///
/// # Safety
/// As [`int12_weights_m`], with VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int12_weights_vnni<const M: usize>(
    w: (*const i8, *const u8),
    x: *const i16,
    k: usize,
    scales: &[f32],
    acc: &mut [[f32; NR]; MR],
) {
    // SAFETY: forwarded.
    unsafe { int12_weights_m::<M, true>(w, x, k, scales, acc) }
}

/// [`int12_weights_m`] with `vpmaddwd`, for AVX-512 without VNNI.
///
/// # Safety
/// As [`int12_weights_m`].
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn int12_weights_bw<const M: usize>(
    w: (*const i8, *const u8),
    x: *const i16,
    k: usize,
    scales: &[f32],
    acc: &mut [[f32; NR]; MR],
) {
    // SAFETY: forwarded.
    unsafe { int12_weights_m::<M, false>(w, x, k, scales, acc) }
}

/// `M` f32 input rows by one panel of bf16 weights widened to f32.
///
/// # Safety
/// As [`int8_weights`], with bf16 weights.
#[target_feature(enable = "avx512f")]
unsafe fn bf16_weights<const M: usize>(
    w: *const u16,
    x: *const f32,
    k: usize,
    acc: &mut [[f32; NR]; MR],
) {
    let mut regs = [[_mm512_setzero_ps(); 3]; M];
    for c in 0..k {
        let mut wv = [_mm512_setzero_ps(); 3];
        for (v, wv) in wv.iter_mut().enumerate() {
            // SAFETY: 16 weights of input c lie in the panel.
            let half = unsafe { _mm256_loadu_si256(w.add(c * NR + 16 * v).cast()) };
            *wv = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(half)));
        }
        for (i, r) in regs.iter_mut().enumerate() {
            // SAFETY: row i has k inputs.
            let xv = _mm512_set1_ps(unsafe { *x.add(i * k + c) });
            for (a, &wv) in r.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(xv, wv, *a);
            }
        }
    }
    // SAFETY: M <= MR.
    unsafe { store(&regs, acc) }
}

/// `M` offset-int8 input rows by one panel of int8 weights, four products a lane
/// per `vpdpbusd`; the sums less `sums` (the offset), as f32.
///
/// # Safety
/// AVX-512F and VNNI; `w` holds `NR × k` weights packed four inputs at a time, `x`
/// `M` rows of `k` bytes, `k` a multiple of 4.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn vnni<const M: usize>(
    w: *const i8,
    x: *const u8,
    k: usize,
    sums: &[i32; NR],
    acc: &mut [[f32; NR]; MR],
) {
    let mut regs = [[_mm512_setzero_si512(); 3]; M];
    for g in 0..k / 4 {
        let mut wv = [_mm512_setzero_si512(); 3];
        for (v, wv) in wv.iter_mut().enumerate() {
            // SAFETY: the group's 4 × NR weights lie in the panel.
            *wv = unsafe { _mm512_loadu_si512(w.add(g * 4 * NR + 64 * v).cast()) };
        }
        for (i, r) in regs.iter_mut().enumerate() {
            // SAFETY: row i has k bytes.
            let four = unsafe { x.add(i * k + 4 * g).cast::<i32>().read_unaligned() };
            let xv = _mm512_set1_epi32(four);
            for (a, &wv) in r.iter_mut().zip(&wv) {
                *a = _mm512_dpbusd_epi32(*a, xv, wv);
            }
        }
    }
    let mut out = [[_mm512_setzero_ps(); 3]; M];
    for (o, r) in out.iter_mut().zip(&regs) {
        for (v, (o, &a)) in o.iter_mut().zip(r).enumerate() {
            // SAFETY: 16 sums at 16 v lie in the NR of them.
            let s = unsafe { _mm512_loadu_si512(sums.as_ptr().add(16 * v).cast()) };
            *o = _mm512_cvtepi32_ps(_mm512_sub_epi32(a, s));
        }
    }
    // SAFETY: M <= MR.
    unsafe { store(&out, acc) }
}

/// `M` bf16 input rows by one panel of bf16 weights, two products a lane per
/// `vdpbf16ps`.
///
/// # Safety
/// AVX-512F and AVX512_BF16; `w` holds `NR × k` weights packed two inputs at a
/// time, `x` `M` rows of `k` bf16, `k` even.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_dot<const M: usize>(
    w: *const u16,
    x: *const u16,
    k: usize,
    acc: &mut [[f32; NR]; MR],
) {
    let mut regs = [[_mm512_setzero_ps(); 3]; M];
    for g in 0..k / 2 {
        let mut wv = [_mm512_setzero_si512(); 3];
        for (v, wv) in wv.iter_mut().enumerate() {
            // SAFETY: the pair's 2 × NR weights lie in the panel.
            *wv = unsafe { _mm512_loadu_si512(w.add(g * 2 * NR + 32 * v).cast()) };
        }
        for (i, r) in regs.iter_mut().enumerate() {
            // SAFETY: row i has k values.
            let two = unsafe { x.add(i * k + 2 * g).cast::<i32>().read_unaligned() };
            let xv: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(two)) };
            for (a, &wv) in r.iter_mut().zip(&wv) {
                // SAFETY: the same bits, read as 32 bf16.
                let wb: __m512bh = unsafe { std::mem::transmute(wv) };
                *a = _mm512_dpbf16_ps(*a, xv, wb);
            }
        }
    }
    // SAFETY: M <= MR.
    unsafe { store(&regs, acc) }
}
