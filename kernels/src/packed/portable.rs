//! The portable kernels: what the vector kernels compute, in the same order per lane
//! (up to fused multiply-adds in the widening ones), vectorised for the CPU found.

use super::{twelve_bits, widen, GROUP, MR, NR};

multiversion! {
    /// Each group of `GROUP` inputs: exact int32 sums of int14 × 12-bit products, then
    /// added to f32 with the group's scales by one fused multiply-add, as the vector
    /// kernel does.
    pub(super) fn portable_int12_weights(high: &[i8], low: &[u8], x: &[i16], kp: usize, scales: &[f32], acc: &mut [[f32; NR]; MR]) {
        for (i, xr) in x.chunks_exact(kp).enumerate() {
            for (g, xg) in xr.chunks(GROUP).enumerate() {
                let mut dots = [0i32; NR];
                for (pair, xp) in xg.chunks_exact(2).enumerate() {
                    let c = g * GROUP / 2 + pair;
                    let at = c * 2 * NR;
                    for (j, d) in dots.iter_mut().enumerate() {
                        let w0 = twelve_bits(high, low, at + 2 * j);
                        let w1 = twelve_bits(high, low, at + 2 * j + 1);
                        *d += xp[0] as i32 * w0 + xp[1] as i32 * w1;
                    }
                }
                let s = &scales[g * NR..(g + 1) * NR];
                for ((a, &d), &s) in acc[i].iter_mut().zip(&dots).zip(s) {
                    *a = (d as f32).mul_add(s, *a);
                }
            }
        }
    }
}

multiversion! {
    pub(super) fn portable_bf16w(w: &[u16], x: &[f32], k: usize, acc: &mut [[f32; NR]; MR]) {
        for (i, xr) in x.chunks_exact(k).enumerate() {
            for (c, &xv) in xr.iter().enumerate() {
                for (a, &wv) in acc[i].iter_mut().zip(&w[c * NR..(c + 1) * NR]) {
                    *a += xv * widen(wv);
                }
            }
        }
    }
}

multiversion! {
    pub(super) fn portable_vnni(w: &[i8], x: &[u8], kp: usize, sums: &[i32; NR], acc: &mut [[f32; NR]; MR]) {
    for (i, xr) in x.chunks_exact(kp).enumerate() {
        let mut dots = [0i32; NR];
        for (g, xg) in xr.chunks_exact(4).enumerate() {
            let wg = &w[g * 4 * NR..(g + 1) * 4 * NR];
            for (j, d) in dots.iter_mut().enumerate() {
                for t in 0..4 {
                    *d = d.wrapping_add(xg[t] as i32 * wg[j * 4 + t] as i32);
                }
            }
        }
        for (a, (d, s)) in acc[i].iter_mut().zip(dots.iter().zip(sums)) {
            *a = d.wrapping_sub(*s) as f32;
        }
    }
}
}

multiversion! {
    pub(super) fn portable_bf16dot(w: &[u16], x: &[u16], kp: usize, acc: &mut [[f32; NR]; MR]) {
    for (i, xr) in x.chunks_exact(kp).enumerate() {
        for (g, xg) in xr.chunks_exact(2).enumerate() {
            let wg = &w[g * 2 * NR..(g + 1) * 2 * NR];
            for (j, a) in acc[i].iter_mut().enumerate() {
                // vdpbf16ps adds the odd pair's product, then the even one's; bf16
                // products are exact in f32.
                *a += widen(xg[1]) * widen(wg[j * 2 + 1]);
                *a += widen(xg[0]) * widen(wg[j * 2]);
            }
        }
    }
}
}
