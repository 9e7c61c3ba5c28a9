//! Linear layers with int8 or bf16 weights, packed in panels for one product kernel
//! that serves every number of input rows.
//!
//! A decoding step has a few input rows and is bound by streaming the weights (int8 is
//! a quarter of f32's bytes, bf16 half); the vision encoder and the image's
//! cross-attention keys and values have thousands of rows and are bound by arithmetic,
//! where AVX-512 VNNI sums 64 int8 products per instruction and AVX512_BF16 32 bf16
//! products, against 16 for an f32 FMA. Both cases take the same kernel: the weights of
//! `NR` output channels are stored together, `G` inputs at a time (the inputs one
//! instruction sums into a lane), so each step loads `NR × G` weights once and
//! multiplies them with up to `MR` input rows held in registers.
//!
//! The four schemes trade accuracy for arithmetic. `Bf16Weights` rounds only the
//! weights (widened to f32 in registers). `Int12Weights` rounds the weights to 12 bits
//! (stored as an int8 byte and a 4-bit residual, 1.5 bytes a weight) with one scale per
//! output channel and 64 inputs, and each input row to int14 (one scale per row): pairs
//! of int16 products sum exactly into int32 (`vpdpwssd`), and each group of 64 into
//! f32. Its rounding error is a sixteenth of plain int8's, which flips a few percent of
//! near-tied tokens over a 12-layer decoder. `Int8Dynamic` quantizes the weights and
//! each input row to int8 for `vpdpbusd`, and `Bf16Dot` rounds inputs to bf16 for
//! `vdpbf16ps`: coarser numbers, more products per instruction.

use rayon::prelude::*;

use crate::linear::uninit;

/// How a packed layer stores its weights and multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// 12-bit weights (an int8 byte and a 4-bit residual), one scale per output channel
    /// and `GROUP` inputs; each input row quantized to int14 (one scale per row), so
    /// that each group's integer sums are exact.
    Int12Weights,
    /// int8 weights, and each input row quantized to int8 (one scale per row) for
    /// integer dot products (AVX-512 VNNI).
    Int8Dynamic,
    /// bf16 weights; f32 inputs.
    Bf16Weights,
    /// bf16 weights and inputs, pairs of products summed in f32 (AVX512_BF16).
    Bf16Dot,
}

impl Scheme {
    /// Inputs stored together per output channel: what one instruction sums per lane.
    fn group(self) -> usize {
        match self {
            Self::Bf16Weights => 1,
            Self::Int12Weights | Self::Bf16Dot => 2,
            Self::Int8Dynamic => 4,
        }
    }

    /// What the inputs are padded to: the group, or for `Int12Weights` two of them,
    /// whose residuals share bytes.
    fn padding(self) -> usize {
        match self {
            Self::Int12Weights => 4,
            s => s.group(),
        }
    }

    fn is_integer(self) -> bool {
        matches!(self, Self::Int12Weights | Self::Int8Dynamic)
    }

    /// Whether this CPU runs the scheme on its vector kernel (else a portable loop runs
    /// it, giving the same numbers more slowly).
    pub fn is_fast_here(self) -> bool {
        match self {
            Self::Bf16Weights => cpu().avx512,
            Self::Int12Weights => cpu().avx512bw,
            Self::Int8Dynamic => cpu().vnni,
            Self::Bf16Dot => cpu().bf16,
        }
    }

    /// Whether this CPU has tile instructions (AMX) for the scheme's blocks of 16 rows.
    pub fn has_tiles_here(self) -> bool {
        match self {
            Self::Int8Dynamic => cpu().amx_int8,
            Self::Bf16Dot => cpu().amx_bf16,
            _ => false,
        }
    }
}

/// Which kernels a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Plain loops, on any CPU.
    Portable,
    /// AVX-512 registers, `MR` rows at a time.
    Vector,
    /// AMX tiles for each 16 rows, AVX-512 registers for the rest.
    Tiles,
}

/// Output channels per panel: three 16-lane vectors.
const NR: usize = 48;
/// Input rows multiplied per pass over a panel.
const MR: usize = 8;
/// Inputs sharing a scale in `Int12Weights`: finer than a whole channel, so that one
/// large weight coarsens the rounding of 63 others only, not of the whole row; and few
/// enough that a group's int14 × 12-bit products sum exactly in int32 (64 × 8191 ×
/// 2048 < 2³¹). (The integer kernel needs whole-row sums, so `Int8Dynamic` keeps a scale
/// per channel.)
const GROUP: usize = 64;
/// The largest 12-bit weight and int14 input.
const W12: f32 = 2047.0;
const X14: f32 = 8191.0;
/// Input rows per AMX tile.
const TILE_ROWS: usize = 16;
/// Input rows per parallel task when there are many.
const CHUNK_ROWS: usize = 64;

#[derive(Debug, Clone)]
enum Weights {
    I8(Vec<i8>),
    /// Each weight's high 8 bits, laid out as `I8`; and its low 4 bits, the pairs of
    /// inputs `2q` and `2q + 1` sharing bytes (low and high nibble) in the place where
    /// the `I8` layout puts pair `q`.
    I12(Vec<i8>, Vec<u8>),
    Bf16(Vec<u16>),
}

/// A linear layer `y = x Wᵀ + b` with `W` `[out, in]` in reduced precision.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    scheme: Scheme,
    in_features: usize,
    out_features: usize,
    weights: Weights,
    /// `Int8Dynamic`: each output channel's scale (`max |w| / 127`). `Int12Weights`: one
    /// per output channel and `GROUP` inputs (`max |w| / 2047`), laid out
    /// `[panel][group][NR]`.
    scales: Vec<f32>,
    /// `Int8Dynamic`: each output channel's sum of weights, which takes the inputs'
    /// +128 offset back out.
    row_sums: Vec<i32>,
    bias: Option<Vec<f32>>,
}

impl PackedLinear {
    /// Rounds `weight` `[out_features, in]` to the scheme's type (int8 symmetric per
    /// output channel, or 12 bits per channel and `GROUP` inputs for `Int12Weights`;
    /// bf16 to nearest even) and packs it.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, out_features: usize, scheme: Scheme) -> Self {
        let n = out_features;
        let k = weight.len() / n.max(1);
        assert_eq!(k * n, weight.len(), "weight is not [out, in]");
        let mut layer = Self {
            scheme,
            in_features: k,
            out_features: n,
            weights: Weights::I8(Vec::new()),
            scales: Vec::new(),
            row_sums: Vec::new(),
            bias: bias.map(<[f32]>::to_vec),
        };
        let size = n.div_ceil(NR) * NR * layer.padded_in();
        let rows = weight.chunks(k.max(1));
        if scheme == Scheme::Int12Weights {
            let groups = k.div_ceil(GROUP);
            let (mut high, mut low) = (vec![0i8; size], vec![0u8; size / 2]);
            layer.scales = vec![1.0; n.div_ceil(NR) * groups * NR];
            for (o, w) in rows.enumerate() {
                for (g, wg) in w.chunks(GROUP).enumerate() {
                    let max = wg.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = if max > 0.0 { max / W12 } else { 1.0 };
                    for (i, &v) in wg.iter().enumerate() {
                        let q = (v / scale).round().clamp(-W12, W12) as i32;
                        let at = layer.index(o, g * GROUP + i);
                        high[at] = (q >> 4) as i8;
                        let (byte, shift) = residual_at(at);
                        low[byte] |= ((q & 15) as u8) << shift;
                    }
                    layer.scales[(o / NR * groups + g) * NR + o % NR] = scale;
                }
            }
            layer.weights = Weights::I12(high, low);
        } else if scheme.is_integer() {
            let mut packed = vec![0i8; size];
            for (o, w) in rows.enumerate() {
                let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                let mut sum = 0;
                for (i, &v) in w.iter().enumerate() {
                    let q = (v / scale).round().clamp(-127.0, 127.0) as i8;
                    packed[layer.index(o, i)] = q;
                    sum += q as i32;
                }
                layer.scales.push(scale);
                layer.row_sums.push(sum);
            }
            layer.weights = Weights::I8(packed);
        } else {
            let mut packed = vec![0u16; size];
            for (o, w) in rows.enumerate() {
                for (i, &v) in w.iter().enumerate() {
                    packed[layer.index(o, i)] = bf16(v);
                }
            }
            layer.weights = Weights::Bf16(packed);
        }
        layer
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Bytes the layer holds (weights with their padding, scales and bias).
    pub fn size_in_bytes(&self) -> usize {
        let w = match &self.weights {
            Weights::I8(w) => w.len(),
            Weights::I12(high, low) => high.len() + low.len(),
            Weights::Bf16(w) => 2 * w.len(),
        };
        w + 4 * (self.scales.len() + self.row_sums.len())
            + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// The f32 weight `[out, in]` this layer computes with.
    pub fn dequantize(&self) -> Vec<f32> {
        let (n, k) = (self.out_features, self.in_features);
        let mut w = vec![0f32; n * k];
        w.par_chunks_mut(k.max(1)).enumerate().for_each(|(o, row)| {
            for (i, v) in row.iter_mut().enumerate() {
                let at = self.index(o, i);
                *v = match &self.weights {
                    Weights::I8(q) => q[at] as f32 * self.scale(o, i),
                    Weights::I12(high, low) => twelve_bits(high, low, at) as f32 * self.scale(o, i),
                    Weights::Bf16(q) => widen(q[at]),
                };
            }
        });
        w
    }

    /// The scale of integer weight `(o, i)`.
    fn scale(&self, o: usize, i: usize) -> f32 {
        match self.scheme {
            Scheme::Int12Weights => {
                let groups = self.in_features.div_ceil(GROUP);
                self.scales[(o / NR * groups + i / GROUP) * NR + o % NR]
            }
            _ => self.scales[o],
        }
    }

    /// Panel `p`'s group scales (`Int12Weights`).
    fn group_scales(&self, p: usize) -> &[f32] {
        let len = self.in_features.div_ceil(GROUP) * NR;
        &self.scales[p * len..(p + 1) * len]
    }

    fn padded_in(&self) -> usize {
        self.in_features.next_multiple_of(self.scheme.padding())
    }

    /// Where weight `(o, i)` lies: panel `o / NR`, then group `i / G`, then channel
    /// `o % NR`, then `i % G`.
    fn index(&self, o: usize, i: usize) -> usize {
        let g = self.scheme.group();
        let groups = self.padded_in() / g;
        ((o / NR * groups + i / g) * NR + o % NR) * g + i % g
    }

    /// `x [rows, in]` to `x Wᵀ + b + residual` `[rows, out]`.
    pub fn forward(&self, x: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        self.forward_then(x, residual, false)
    }

    /// [`Self::forward`], then exact GELU when `gelu` is set, applied as each block is
    /// written rather than in another pass over the output.
    pub fn forward_then(&self, x: &[f32], residual: Option<&[f32]>, gelu: bool) -> Vec<f32> {
        let kernel = if self.scheme.has_tiles_here() && self.tiles_fit() {
            Kernel::Tiles
        } else if self.scheme.is_fast_here() {
            Kernel::Vector
        } else {
            Kernel::Portable
        };
        self.forward_on(x, residual, kernel, gelu)
    }

    /// Whether a row of packed inputs is whole tile rows (64 bytes).
    fn tiles_fit(&self) -> bool {
        let bytes = if self.scheme.is_integer() { 1 } else { 2 };
        (self.padded_in() * bytes).is_multiple_of(64)
    }

    fn forward_on(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        kernel: Kernel,
        gelu: bool,
    ) -> Vec<f32> {
        let fast = kernel != Kernel::Portable;
        let (k, n) = (self.in_features, self.out_features);
        let rows = x.len().checked_div(k).unwrap_or(0);
        assert_eq!(rows * k, x.len(), "input is not [rows, {k}]");
        let inputs = Inputs::prepare(self.scheme, x, k, self.padded_in());
        let mut y = uninit(rows * n);
        let out = crate::attention::Shared(y.as_mut_ptr().cast());
        let panels = n.div_ceil(NR);
        let chunk = if rows <= CHUNK_ROWS {
            rows.max(1)
        } else {
            CHUNK_ROWS
        };
        let chunks = rows.div_ceil(chunk);
        (0..panels * chunks).into_par_iter().for_each(|task| {
            let (p, c) = (task % panels, task / panels);
            let mut r = c * chunk;
            let end = ((c + 1) * chunk).min(rows);
            while r < end {
                if kernel == Kernel::Tiles && end - r >= TILE_ROWS {
                    let mut acc = [[0f32; NR]; TILE_ROWS];
                    self.tile_block(&inputs, p, r, &mut acc);
                    // SAFETY: this task alone writes panel p's columns of these rows.
                    unsafe { self.write(&acc, &inputs, p, r, residual, gelu, out) };
                    r += TILE_ROWS;
                    continue;
                }
                let m = MR.min(end - r);
                let mut acc = [[0f32; NR]; MR];
                self.block(&inputs, p, r, m, fast, &mut acc);
                // SAFETY: this task alone writes panel p's columns of rows r..r + m.
                unsafe { self.write(&acc[..m], &inputs, p, r, residual, gelu, out) };
                r += m;
            }
        });
        // SAFETY: the tasks covered every panel of every row.
        unsafe { crate::linear::assume_init(y) }
    }

    /// The raw sums of panel `p` with input rows `r..r + m`: f32 products, or for
    /// `Int8Dynamic` the integer dot product less the offset's `128 × row sum`.
    fn block(
        &self,
        inputs: &Inputs,
        p: usize,
        r: usize,
        m: usize,
        fast: bool,
        acc: &mut [[f32; NR]; MR],
    ) {
        let kp = self.padded_in();
        let len = NR * kp;
        let panel = p * len..(p + 1) * len;
        let sums = (self.scheme == Scheme::Int8Dynamic).then(|| self.offset_sums(p));
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `is_fast_here` found the scheme's instructions on this CPU; the
            // panel holds NR × kp weights and each input row kp values (k for f32).
            unsafe {
                match (&self.weights, inputs) {
                    (Weights::I12(high, low), Inputs::I16(x, _)) => avx512::int12_weights(
                        m,
                        (&high[panel.clone()], &low[panel.start / 2..panel.end / 2]),
                        &x[r * kp..],
                        kp,
                        self.group_scales(p),
                        acc,
                    ),
                    (Weights::Bf16(w), Inputs::F32(x)) => {
                        avx512::dispatch_bf16w(m, &w[panel], &x[r * kp..], kp, acc)
                    }
                    (Weights::I8(w), Inputs::U8(x, _)) => avx512::dispatch_vnni(
                        m,
                        &w[panel],
                        &x[r * kp..],
                        kp,
                        &sums.unwrap_or([0; NR]),
                        acc,
                    ),
                    (Weights::Bf16(w), Inputs::Bf16(x)) => {
                        avx512::dispatch_bf16dot(m, &w[panel], &x[r * kp..], kp, acc)
                    }
                    _ => unreachable!("inputs are prepared for the scheme"),
                }
            }
            return;
        }
        let _ = fast;
        match (&self.weights, inputs) {
            (Weights::I12(high, low), Inputs::I16(x, _)) => portable_int12_weights(
                &high[panel.clone()],
                &low[panel.start / 2..panel.end / 2],
                &x[r * kp..(r + m) * kp],
                kp,
                self.group_scales(p),
                acc,
            ),
            (Weights::Bf16(w), Inputs::F32(x)) => {
                portable_bf16w(&w[panel], &x[r * kp..(r + m) * kp], kp, acc)
            }
            (Weights::I8(w), Inputs::U8(x, _)) => portable_vnni(
                &w[panel],
                &x[r * kp..(r + m) * kp],
                kp,
                &sums.unwrap_or([0; NR]),
                acc,
            ),
            (Weights::Bf16(w), Inputs::Bf16(x)) => {
                portable_bf16dot(&w[panel], &x[r * kp..(r + m) * kp], kp, acc)
            }
            _ => unreachable!("inputs are prepared for the scheme"),
        }
    }

    /// What the inputs' +128 offset adds to each of panel `p`'s integer sums.
    fn offset_sums(&self, p: usize) -> [i32; NR] {
        let mut s = [0i32; NR];
        for (j, s) in s.iter_mut().enumerate() {
            *s = self.row_sums.get(p * NR + j).map_or(0, |v| 128 * v);
        }
        s
    }

    /// Panel `p` by input rows `r..r + 16` on AMX tiles: as [`Self::block`] gives them.
    fn tile_block(&self, inputs: &Inputs, p: usize, r: usize, acc: &mut [[f32; NR]; TILE_ROWS]) {
        let kp = self.padded_in();
        let panel = p * NR * kp..(p + 1) * NR * kp;
        #[cfg(target_arch = "x86_64")]
        match (&self.weights, inputs) {
            (Weights::Bf16(w), Inputs::Bf16(x)) => {
                let x = &x[r * kp..(r + TILE_ROWS) * kp];
                // SAFETY: `has_tiles_here` found AMX-BF16 and the OS let us use it; the
                // panel and the 16 rows hold what the kernel reads.
                unsafe {
                    amx::product::<false>(
                        w[panel].as_ptr().cast(),
                        x.as_ptr().cast(),
                        2 * kp,
                        acc.as_mut_ptr().cast(),
                    )
                }
            }
            (Weights::I8(w), Inputs::U8(x, _)) => {
                let x = &x[r * kp..(r + TILE_ROWS) * kp];
                let mut dots = [[0i32; NR]; TILE_ROWS];
                // SAFETY: as above, with AMX-INT8.
                unsafe {
                    amx::product::<true>(
                        w[panel].as_ptr().cast(),
                        x.as_ptr(),
                        kp,
                        dots.as_mut_ptr().cast(),
                    )
                }
                let sums = self.offset_sums(p);
                for (a, d) in acc.iter_mut().zip(&dots) {
                    for ((a, &d), &s) in a.iter_mut().zip(d).zip(&sums) {
                        *a = d.wrapping_sub(s) as f32;
                    }
                }
            }
            _ => unreachable!("tiles serve the schemes with packed inputs"),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AMX is an x86-64 extension: {inputs:p} {p} {r} {acc:p} {panel:?}")
    }

    /// Scales panel `p`'s sums for the rows from `r`, adds bias and residual, and stores
    /// the channels that exist.
    ///
    /// # Safety
    /// `y` must be valid for `rows × out` floats, and no other thread may write these.
    #[allow(clippy::too_many_arguments)]
    unsafe fn write(
        &self,
        acc: &[[f32; NR]],
        inputs: &Inputs,
        p: usize,
        r: usize,
        residual: Option<&[f32]>,
        gelu: bool,
        y: crate::attention::Shared,
    ) {
        let n = self.out_features;
        let o0 = p * NR;
        let width = NR.min(n - o0);
        let cols = o0..o0 + width;
        // Int12Weights' group scales are in the sums already.
        let scales = if self.scheme == Scheme::Int8Dynamic {
            &self.scales[cols.clone()]
        } else {
            &[]
        };
        let bias = self.bias.as_ref().map_or(&[][..], |b| &b[cols.clone()]);
        for (i, sums) in acc.iter().enumerate() {
            let row = r + i;
            let row_scale = match inputs {
                Inputs::U8(_, scales) | Inputs::I16(_, scales) => scales[row],
                _ => 1.0,
            };
            let res = residual.map_or(&[][..], |res| &res[row * n + o0..row * n + o0 + width]);
            // SAFETY: these columns of this row are this task's part of y.
            let out = unsafe { std::slice::from_raw_parts_mut(y.at(row * n + o0), width) };
            finish(out, &sums[..width], scales, row_scale, bias, res, gelu);
        }
    }
}

multiversion! {
    /// `y = sums × row_scale × scales + bias + residual`, each slice's factor or term
    /// left out when it is empty; then GELU when `gelu` is set.
    fn finish(
        y: &mut [f32],
        sums: &[f32],
        scales: &[f32],
        row_scale: f32,
        bias: &[f32],
        residual: &[f32],
        gelu: bool,
    ) {
        for (y, &s) in y.iter_mut().zip(sums) {
            *y = s * row_scale;
        }
        if !scales.is_empty() {
            for (y, &s) in y.iter_mut().zip(scales) {
                *y *= s;
            }
        }
        for terms in [bias, residual] {
            if !terms.is_empty() {
                for (y, &t) in y.iter_mut().zip(terms) {
                    *y += t;
                }
            }
        }
        if gelu {
            for y in y.iter_mut() {
                *y = crate::math::gelu(*y);
            }
        }
    }
}

/// `v` rounded to the nearest integer (ties to even) within `±limit` (at most 2²²; NaN
/// gives `-limit`): in plain arithmetic that the compiler vectorises, where
/// `round_ties_even` and a saturating cast stay scalar calls.
#[inline(always)]
pub(crate) fn round_clamped(v: f32, limit: f32) -> i32 {
    // Adding and taking back 1.5 × 2²³ leaves no fraction bits: the sum rounds to an
    // integer in the default rounding mode, nearest with ties to even.
    const SHIFT: f32 = 12_582_912.0;
    // `max` and `min` take the number over NaN, so NaN becomes -limit.
    let r = (v.max(-limit).min(limit) + SHIFT) - SHIFT;
    // SAFETY: r is an integer within ±2²², representable as i32.
    unsafe { r.to_int_unchecked() }
}

/// `x` quantized symmetrically to `[-limit, limit]` into `q` through `to`, with the
/// scale into `scale`; `q` may be longer (padding, left as it is).
#[inline(always)]
pub(crate) fn quantize_symmetric<T>(
    x: &[f32],
    q: &mut [T],
    scale: &mut f32,
    limit: f32,
    to: impl Fn(i32) -> T,
) {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    *scale = if max > 0.0 { max / limit } else { 1.0 };
    let inv = 1.0 / *scale;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = to(round_clamped(v * inv, limit));
    }
}

multiversion! {
    /// int8 offset by 128 into a byte, for `vpdpbusd`.
    fn quantize_row(x: &[f32], q: &mut [u8], scale: &mut f32) {
        quantize_symmetric(x, q, scale, 127.0, |v| (v + 128) as u8)
    }
}

multiversion! {
    fn quantize_row_i14(x: &[f32], q: &mut [i16], scale: &mut f32) {
        quantize_symmetric(x, q, scale, X14, |v| v as i16)
    }
}

multiversion! {
    pub(crate) fn round_row_bf16(x: &[f32], q: &mut [u16]) {
        for (q, &v) in q.iter_mut().zip(x) {
            *q = bf16(v);
        }
    }
}

/// The inputs as the scheme's kernel reads them: f32 rows of `k`, or rows padded to the
/// group (`kp`) of bf16, or of offset int8 or int14 with each row's scale.
enum Inputs<'a> {
    F32(&'a [f32]),
    U8(Vec<u8>, Vec<f32>),
    I16(Vec<i16>, Vec<f32>),
    Bf16(Vec<u16>),
}

impl<'a> Inputs<'a> {
    fn prepare(scheme: Scheme, x: &'a [f32], k: usize, kp: usize) -> Self {
        let rows = x.len().checked_div(k).unwrap_or(0);
        match scheme {
            Scheme::Bf16Weights => Self::F32(x),
            Scheme::Int12Weights => {
                let (q, scales) = quantized_rows(x, (rows, k, kp), 0, quantize_row_i14);
                Self::I16(q, scales)
            }
            Scheme::Bf16Dot => {
                let mut q = vec![0u16; rows * kp];
                q.par_chunks_mut(kp.max(1))
                    .zip(x.par_chunks(k.max(1)))
                    .for_each(|(q, x)| round_row_bf16(x, q));
                Self::Bf16(q)
            }
            Scheme::Int8Dynamic => {
                // Padding is the offset's zero; its weights are zero anyway.
                let (q, scales) = quantized_rows(x, (rows, k, kp), 128, quantize_row);
                Self::U8(q, scales)
            }
        }
    }
}

/// `rows` rows of `k` inputs quantized by `quantize` into rows of `kp` (the rest left
/// at `pad`), with each row's scale.
fn quantized_rows<T: Copy + Send + Sync>(
    x: &[f32],
    (rows, k, kp): (usize, usize, usize),
    pad: T,
    quantize: fn(&[f32], &mut [T], &mut f32),
) -> (Vec<T>, Vec<f32>) {
    let mut q = vec![pad; rows * kp];
    let scales = q
        .par_chunks_mut(kp.max(1))
        .zip(x.par_chunks(k.max(1)))
        .map(|(q, x)| {
            let mut scale = 1.0;
            quantize(x, q, &mut scale);
            scale
        })
        .collect();
    (q, scales)
}

/// f32 to bf16, rounding to nearest even (NaN stays NaN).
#[inline]
pub fn bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn widen(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// Where the 4-bit residual of the weight at `at` in the `I8` layout lies: its byte,
/// and the shift of its nibble. Pairs `2q` and `2q + 1` of inputs (`2 × NR` weights
/// each) share the bytes of pair `q`'s place, so that one load serves two pairs.
fn residual_at(at: usize) -> (usize, u32) {
    let (pair, lane) = (at / (2 * NR), at % (2 * NR));
    ((pair / 2) * 2 * NR + lane, 4 * (pair % 2) as u32)
}

/// The 12-bit weight at `at`: its high byte times 16 plus its residual.
fn twelve_bits(high: &[i8], low: &[u8], at: usize) -> i32 {
    let (byte, shift) = residual_at(at);
    high[at] as i32 * 16 + ((low[byte] >> shift) & 15) as i32
}

/// Replaces, in each row of `logits` `[rows, vocab]`, the `top` largest reduced-precision logits by
/// their exact f32 values `h · weight[v] + bias[v]` (`h` `[rows, d]`, `weight`
/// `[vocab, d]`). Which token wins, and the scores of the likely ones, are then f32's
/// whenever f32's best tokens are among the `top`, at the cost of `top` dot products
/// a row: an LM head's rounding error otherwise flips near-ties between tokens.
pub fn rescore_top(h: &[f32], logits: &mut [f32], weight: &[f32], bias: &[f32], top: usize) {
    let d = weight.len() / bias.len();
    logits
        .par_chunks_mut(bias.len())
        .zip(h.par_chunks(d))
        .for_each(|(row, hr)| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            let top = top.min(row.len());
            if top < row.len() {
                order.select_nth_unstable_by(top, |&a, &b| row[b].total_cmp(&row[a]));
            }
            for &v in &order[..top] {
                let w = &weight[v * d..(v + 1) * d];
                row[v] = hr.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + bias[v];
            }
        });
}

struct Cpu {
    avx512: bool,
    avx512bw: bool,
    vnni: bool,
    bf16: bool,
    amx_int8: bool,
    amx_bf16: bool,
}

fn cpu() -> &'static Cpu {
    use std::sync::OnceLock;
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(|| {
        let avx512 = crate::simd::level() == crate::simd::Level::V4;
        #[cfg(target_arch = "x86_64")]
        let (vnni, bf16) = (
            avx512 && std::arch::is_x86_feature_detected!("avx512vnni"),
            avx512 && std::arch::is_x86_feature_detected!("avx512bf16"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (vnni, bf16) = (false, false);
        #[cfg(target_arch = "x86_64")]
        let (amx_int8, amx_bf16) = amx::available(avx512);
        #[cfg(not(target_arch = "x86_64"))]
        let (amx_int8, amx_bf16) = (false, false);
        #[cfg(target_arch = "x86_64")]
        let avx512bw = avx512 && std::arch::is_x86_feature_detected!("avx512bw");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512bw = false;
        Cpu {
            avx512,
            avx512bw,
            vnni,
            bf16,
            amx_int8,
            amx_bf16,
        }
    })
}

/// Whether this CPU has AVX-512 (F, VL), which every vector kernel here needs.
pub fn has_avx512() -> bool {
    cpu().avx512
}

/// Whether this CPU has AVX-512 VNNI (integer dot products).
pub fn has_vnni() -> bool {
    cpu().vnni
}

/// Whether this CPU has AMX-BF16 tiles, granted to this process.
pub fn has_bf16_tiles() -> bool {
    cpu().amx_bf16
}

/// Whether this CPU has AVX512_BF16 (bf16 dot products).
pub fn has_bf16() -> bool {
    cpu().bf16
}

mod portable;
use portable::{portable_bf16dot, portable_bf16w, portable_int12_weights, portable_vnni};

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;
