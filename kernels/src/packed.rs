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
//! weights (widened to f32 in registers). `Int8Weights` rounds the weights to int8 with
//! one scale per output channel and 64 inputs, and each input row to int16 (one scale
//! per row, 2⁻¹⁶ of its largest value a step, far below the weights' rounding): pairs of
//! int16 products sum exactly into int32 (`vpdpwssd`), and each group of 64 into f32.
//! `Int8Dynamic` quantizes each input row to int8 for `vpdpbusd`, and `Bf16Dot` rounds
//! inputs to bf16 for `vdpbf16ps`: coarser inputs, twice the products per instruction.

use rayon::prelude::*;

use crate::linear::uninit;

/// How a packed layer stores its weights and multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// int8 weights, one scale per output channel and `GROUP` inputs; each input row
    /// quantized to int16 (one scale per row) for exact integer products.
    Int8Weights,
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
            Self::Int8Weights | Self::Bf16Dot => 2,
            Self::Int8Dynamic => 4,
        }
    }

    fn is_int8(self) -> bool {
        matches!(self, Self::Int8Weights | Self::Int8Dynamic)
    }

    /// Whether this CPU runs the scheme on its vector kernel (else a portable loop runs
    /// it, giving the same numbers more slowly).
    pub fn is_fast_here(self) -> bool {
        match self {
            Self::Bf16Weights => cpu().avx512,
            Self::Int8Weights => cpu().avx512bw,
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
/// Inputs sharing a scale in `Int8Weights`: finer than a whole channel, so that one
/// large weight coarsens the rounding of 63 others only, not of the whole row. (The
/// integer kernel needs whole-row sums, so `Int8Dynamic` keeps a scale per channel.)
const GROUP: usize = 64;
/// Input rows per AMX tile.
const TILE_ROWS: usize = 16;
/// Input rows per parallel task when there are many.
const CHUNK_ROWS: usize = 64;

#[derive(Debug, Clone)]
enum Weights {
    I8(Vec<i8>),
    Bf16(Vec<u16>),
}

/// A linear layer `y = x Wᵀ + b` with `W` `[out, in]` in reduced precision.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    scheme: Scheme,
    in_features: usize,
    out_features: usize,
    weights: Weights,
    /// `Int8Dynamic`: each output channel's scale (`max |w| / 127`). `Int8Weights`: one
    /// per output channel and `GROUP` inputs, laid out `[panel][group][NR]`.
    scales: Vec<f32>,
    /// `Int8Dynamic`: each output channel's sum of weights, which takes the inputs'
    /// +128 offset back out.
    row_sums: Vec<i32>,
    bias: Option<Vec<f32>>,
}

impl PackedLinear {
    /// Rounds `weight` `[out_features, in]` to the scheme's type (int8 symmetric per
    /// output channel, or per channel and `GROUP` inputs for `Int8Weights`; bf16 to
    /// nearest even) and packs it.
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
        if scheme == Scheme::Int8Weights {
            let groups = k.div_ceil(GROUP);
            let mut packed = vec![0i8; size];
            layer.scales = vec![1.0; n.div_ceil(NR) * groups * NR];
            for (o, w) in rows.enumerate() {
                for (g, wg) in w.chunks(GROUP).enumerate() {
                    let max = wg.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                    for (i, &v) in wg.iter().enumerate() {
                        let q = (v / scale).round().clamp(-127.0, 127.0) as i8;
                        packed[layer.index(o, g * GROUP + i)] = q;
                    }
                    layer.scales[(o / NR * groups + g) * NR + o % NR] = scale;
                }
            }
            layer.weights = Weights::I8(packed);
        } else if scheme.is_int8() {
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
                *v = match &self.weights {
                    Weights::I8(q) => q[self.index(o, i)] as f32 * self.scale(o, i),
                    Weights::Bf16(q) => f32::from_bits((q[self.index(o, i)] as u32) << 16),
                };
            }
        });
        w
    }

    /// The scale of int8 weight `(o, i)`.
    fn scale(&self, o: usize, i: usize) -> f32 {
        match self.scheme {
            Scheme::Int8Weights => {
                let groups = self.in_features.div_ceil(GROUP);
                self.scales[(o / NR * groups + i / GROUP) * NR + o % NR]
            }
            _ => self.scales[o],
        }
    }

    /// Panel `p`'s group scales (`Int8Weights`).
    fn group_scales(&self, p: usize) -> &[f32] {
        let len = self.in_features.div_ceil(GROUP) * NR;
        &self.scales[p * len..(p + 1) * len]
    }

    fn padded_in(&self) -> usize {
        self.in_features.next_multiple_of(self.scheme.group())
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
        let bytes = if self.scheme.is_int8() { 1 } else { 2 };
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
                    (Weights::I8(w), Inputs::I16(x, _)) => avx512::int8_weights(
                        m,
                        &w[panel],
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
            (Weights::I8(w), Inputs::I16(x, _)) => portable_int8_weights(
                &w[panel],
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
        // Int8Weights' group scales are in the sums already.
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

multiversion! {
    /// `x` quantized symmetrically to [-127, 127] and offset by 128 into `q`, with the
    /// scale into `scale`; `q` may be longer (padding, left as it is).
    fn quantize_row(x: &[f32], q: &mut [u8], scale: &mut f32) {
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        *scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let inv = 1.0 / *scale;
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (round_clamped(v * inv, 127.0) + 128) as u8;
        }
    }
}

multiversion! {
    /// `x` quantized symmetrically to [-32767, 32767] into `q`, with the scale into
    /// `scale`; `q` may be longer (padding, left as it is).
    fn quantize_row_i16(x: &[f32], q: &mut [i16], scale: &mut f32) {
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        *scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
        let inv = 1.0 / *scale;
        for (q, &v) in q.iter_mut().zip(x) {
            *q = round_clamped(v * inv, 32767.0) as i16;
        }
    }
}

multiversion! {
    fn round_row_bf16(x: &[f32], q: &mut [u16]) {
        for (q, &v) in q.iter_mut().zip(x) {
            *q = bf16(v);
        }
    }
}

/// The inputs as the scheme's kernel reads them: f32 rows of `k`, or rows padded to the
/// group (`kp`) of bf16, or of offset int8 or int16 with each row's scale.
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
            Scheme::Int8Weights => {
                let mut q = vec![0i16; rows * kp];
                let scales = q
                    .par_chunks_mut(kp.max(1))
                    .zip(x.par_chunks(k.max(1)))
                    .map(|(q, x)| {
                        let mut scale = 1.0;
                        quantize_row_i16(x, q, &mut scale);
                        scale
                    })
                    .collect();
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
                let mut q = vec![128u8; rows * kp];
                let scales = q
                    .par_chunks_mut(kp.max(1))
                    .zip(x.par_chunks(k.max(1)))
                    .map(|(q, x)| {
                        let mut scale = 1.0;
                        quantize_row(x, q, &mut scale);
                        scale
                    })
                    .collect();
                Self::U8(q, scales)
            }
        }
    }
}

/// f32 to bf16, rounding to nearest even (NaN stays NaN).
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

/// Whether this CPU has AVX512_BF16 (bf16 dot products).
pub fn has_bf16() -> bool {
    cpu().bf16
}

// The portable kernels compute what the vector kernels do, in the same order per lane
// (up to fused multiply-adds in the widening ones), vectorised for the CPU found.

multiversion! {
    /// Each group of `GROUP` inputs: exact int32 sums of int16 pairs, then added to f32
    /// with the group's scales by one fused multiply-add, as the vector kernel does.
    fn portable_int8_weights(w: &[i8], x: &[i16], kp: usize, scales: &[f32], acc: &mut [[f32; NR]; MR]) {
        for (i, xr) in x.chunks_exact(kp).enumerate() {
            for (g, xg) in xr.chunks(GROUP).enumerate() {
                let mut dots = [0i32; NR];
                for (pair, xp) in xg.chunks_exact(2).enumerate() {
                    let c = g * GROUP / 2 + pair;
                    let wp = &w[c * 2 * NR..(c + 1) * 2 * NR];
                    for (j, d) in dots.iter_mut().enumerate() {
                        *d += xp[0] as i32 * wp[2 * j] as i32 + xp[1] as i32 * wp[2 * j + 1] as i32;
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
    fn portable_bf16w(w: &[u16], x: &[f32], k: usize, acc: &mut [[f32; NR]; MR]) {
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
    fn portable_vnni(w: &[i8], x: &[u8], kp: usize, sums: &[i32; NR], acc: &mut [[f32; NR]; MR]) {
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
    fn portable_bf16dot(w: &[u16], x: &[u16], kp: usize, acc: &mut [[f32; NR]; MR]) {
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

/// Intel's tile instructions (AMX), through assembly: the tile registers are the
/// whole machine state they touch, and no other code of the process uses them.
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;

    use super::{NR, TILE_ROWS};

    /// Whether AMX-INT8 and AMX-BF16 may run: the CPU has them (CPUID leaf 7) and Linux
    /// grants this process the tile data state.
    pub(super) fn available(avx512: bool) -> (bool, bool) {
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 7 exists on every x86-64 CPU with AVX-512.
        let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
        let (tile, bf16, int8) = (edx >> 24 & 1 == 1, edx >> 22 & 1 == 1, edx >> 25 & 1 == 1);
        if !(avx512 && tile && (bf16 || int8) && cfg!(target_os = "linux")) {
            return (false, false);
        }
        let granted: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) only changes which
        // register state this process may use; it fails harmlessly where unsupported.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => granted, in("rdi") 0x1023i64,
                 in("rsi") 18i64, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        (granted == 0 && int8, granted == 0 && bf16)
    }

    /// Bytes between a panel's rows of packed groups (`NR` channels × 4 bytes).
    const B_STRIDE: usize = NR * 4;

    /// Sums of 16 input rows `a` (`row_bytes` apart, packed as the weights are) with one
    /// panel `b`, into `out` `[16][NR]` (f32, or i32 for int8): tmm0-2 hold the sums
    /// of three groups of 16 channels, tmm3 the inputs, tmm4-6 the weights.
    ///
    /// # Safety
    /// The process must have AMX-INT8 (`INT8`) or AMX-BF16 granted; `a` holds 16 rows
    /// of `row_bytes` (a multiple of 64), `b` the panel of `NR × row_bytes` bytes and
    /// `out` room for `16 × NR` values.
    pub(super) unsafe fn product<const INT8: bool>(
        b: *const u8,
        a: *const u8,
        row_bytes: usize,
        out: *mut u8,
    ) {
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        for t in 0..7 {
            cfg[16 + 2 * t] = 64;
            cfg[48 + t] = TILE_ROWS as u8;
        }
        // SAFETY: the caller's contract; every tile is 16 rows of 64 bytes, read and
        // written with the strides that lay them out.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                options(nostack, nomem)
            );
            for s in 0..row_bytes / 64 {
                let w = b.add(s * TILE_ROWS * B_STRIDE);
                asm!("tileloadd tmm3, [{a} + {sa} * 1]",
                     "tileloadd tmm4, [{w} + {sb} * 1]",
                     "tileloadd tmm5, [{w} + {sb} * 1 + 64]",
                     "tileloadd tmm6, [{w} + {sb} * 1 + 128]",
                     a = in(reg) a.add(64 * s), sa = in(reg) row_bytes,
                     w = in(reg) w, sb = in(reg) B_STRIDE, options(nostack, readonly));
                if INT8 {
                    asm!(
                        "tdpbusd tmm0, tmm3, tmm4",
                        "tdpbusd tmm1, tmm3, tmm5",
                        "tdpbusd tmm2, tmm3, tmm6",
                        options(nostack, nomem)
                    );
                } else {
                    asm!(
                        "tdpbf16ps tmm0, tmm3, tmm4",
                        "tdpbf16ps tmm1, tmm3, tmm5",
                        "tdpbf16ps tmm2, tmm3, tmm6",
                        options(nostack, nomem)
                    );
                }
            }
            asm!("tilestored [{o} + {s} * 1], tmm0",
                 "tilestored [{o} + {s} * 1 + 64], tmm1",
                 "tilestored [{o} + {s} * 1 + 128], tmm2",
                 o = in(reg) out, s = in(reg) NR * 4, options(nostack));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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

    /// `m` int16 input rows by one panel of int8 weights: [`int8_weights_4`] on up to 4
    /// rows at a time (its int32 and f32 sums take 24 of the 32 registers).
    ///
    /// # Safety
    /// As [`int8_weights_4`].
    pub(super) unsafe fn int8_weights(
        m: usize,
        w: &[i8],
        x: &[i16],
        k: usize,
        scales: &[f32],
        acc: &mut [[f32; NR]; MR],
    ) {
        assert!(m <= MR && x.len() >= m * k && scales.len() >= k.div_ceil(GROUP) * NR);
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(4);
            let mut part = [[0f32; NR]; 4];
            let (w, x) = (w.as_ptr(), x[r * k..].as_ptr());
            // SAFETY: forwarded from the caller; x holds `rows` more rows.
            unsafe {
                match (rows, super::cpu().vnni) {
                    (1, true) => int8_weights_vnni::<1>(w, x, k, scales, &mut part),
                    (2, true) => int8_weights_vnni::<2>(w, x, k, scales, &mut part),
                    (3, true) => int8_weights_vnni::<3>(w, x, k, scales, &mut part),
                    (_, true) => int8_weights_vnni::<4>(w, x, k, scales, &mut part),
                    (1, false) => int8_weights_bw::<1>(w, x, k, scales, &mut part),
                    (2, false) => int8_weights_bw::<2>(w, x, k, scales, &mut part),
                    (3, false) => int8_weights_bw::<3>(w, x, k, scales, &mut part),
                    (_, false) => int8_weights_bw::<4>(w, x, k, scales, &mut part),
                }
            }
            acc[r..r + rows].copy_from_slice(&part[..rows]);
            r += rows;
        }
    }

    /// `M` (at most 4) int16 input rows by one panel of int8 weights packed two inputs
    /// at a time: 32 weights widened to int16 per instruction, pairs of products summed
    /// into int32 by `vpdpwssd` (with VNNI) or `vpmaddwd`, each group of `GROUP` inputs
    /// then added to the f32 sums with its scales.
    ///
    /// # Safety
    /// AVX-512F and BW (and VNNI when `VNNI`); `w` holds `NR × k` weights, `x` `M` rows
    /// of `k` (even) values, `scales` `NR` per group.
    #[inline(always)]
    unsafe fn int8_weights_4<const M: usize, const VNNI: bool>(
        w: *const i8,
        x: *const i16,
        k: usize,
        scales: &[f32],
        acc: &mut [[f32; NR]; 4],
    ) {
        let mut sums = [[_mm512_setzero_ps(); 3]; M];
        for g in 0..k.div_ceil(GROUP) {
            let mut dots = [[_mm512_setzero_si512(); 3]; M];
            for pair in g * GROUP / 2..((g + 1) * GROUP).min(k) / 2 {
                let mut wv = [_mm512_setzero_si512(); 3];
                for (v, wv) in wv.iter_mut().enumerate() {
                    // SAFETY: the pair's 2 × NR weights lie in the panel.
                    let bytes = unsafe { _mm256_loadu_si256(w.add(pair * 2 * NR + 32 * v).cast()) };
                    // SAFETY: AVX-512BW is present.
                    *wv = unsafe { _mm512_cvtepi8_epi16(bytes) };
                }
                for (i, d) in dots.iter_mut().enumerate() {
                    // SAFETY: row i has k values.
                    let two = unsafe { x.add(i * k + 2 * pair).cast::<i32>().read_unaligned() };
                    let xv = _mm512_set1_epi32(two);
                    for (d, &wv) in d.iter_mut().zip(&wv) {
                        *d = if VNNI {
                            // SAFETY: VNNI is present (the caller's contract).
                            unsafe { _mm512_dpwssd_epi32(*d, xv, wv) }
                        } else {
                            // SAFETY: AVX-512BW is present.
                            unsafe { _mm512_add_epi32(*d, _mm512_madd_epi16(xv, wv)) }
                        };
                    }
                }
            }
            for v in 0..3 {
                // SAFETY: AVX-512F is present; the group's NR scales lie in `scales`.
                unsafe {
                    let sv = _mm512_loadu_ps(scales[g * NR + 16 * v..][..16].as_ptr());
                    for (s, d) in sums.iter_mut().zip(&dots) {
                        s[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[v]), sv, s[v]);
                    }
                }
            }
        }
        for (row, s) in acc.iter_mut().zip(&sums) {
            for (v, &reg) in s.iter().enumerate() {
                // SAFETY: 16 floats at 16 v lie in the row of NR.
                unsafe { _mm512_storeu_ps(row[16 * v..][..16].as_mut_ptr(), reg) };
            }
        }
    }

    /// [`int8_weights_4`] with `vpdpwssd`.
    ///
    /// # Safety
    /// As [`int8_weights_4`], with VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn int8_weights_vnni<const M: usize>(
        w: *const i8,
        x: *const i16,
        k: usize,
        scales: &[f32],
        acc: &mut [[f32; NR]; 4],
    ) {
        // SAFETY: forwarded.
        unsafe { int8_weights_4::<M, true>(w, x, k, scales, acc) }
    }

    /// [`int8_weights_4`] with `vpmaddwd`, for AVX-512 without VNNI.
    ///
    /// # Safety
    /// As [`int8_weights_4`].
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn int8_weights_bw<const M: usize>(
        w: *const i8,
        x: *const i16,
        k: usize,
        scales: &[f32],
        acc: &mut [[f32; NR]; 4],
    ) {
        // SAFETY: forwarded.
        unsafe { int8_weights_4::<M, false>(w, x, k, scales, acc) }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMES: [Scheme; 4] = [
        Scheme::Int8Weights,
        Scheme::Int8Dynamic,
        Scheme::Bf16Weights,
        Scheme::Bf16Dot,
    ];

    struct Case {
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        res: Vec<f32>,
        rows: usize,
        k: usize,
        n: usize,
    }

    /// Row counts on both sides of a register block (8) and a parallel chunk (64),
    /// inputs not a multiple of the groups, outputs not a multiple of a panel (48).
    fn cases() -> Vec<Case> {
        [
            (1, 768, 80),
            (3, 48, 17),
            (7, 33, 70),
            (8, 64, 96),
            (9, 202, 24),
            (70, 64, 100),
            (40, 128, 50),
            (130, 21, 49),
        ]
        .into_iter()
        .map(|(rows, k, n)| Case {
            x: (0..rows * k)
                .map(|i| ((i * 37) % 19) as f32 / 7.0 - 1.2 + (i % 3) as f32 * 0.013)
                .collect(),
            w: (0..n * k)
                .map(|i| (((i * 53) % 23) as f32 / 11.0 - 1.0) * (1.0 + (i / k) as f32 / 10.0))
                .collect(),
            b: (0..n).map(|i| i as f32 * 0.25 - 3.0).collect(),
            res: (0..rows * n).map(|i| ((i * 7) % 5) as f32).collect(),
            rows,
            k,
            n,
        })
        .collect()
    }

    /// `x · w[o] + b + residual` in f64 over input row `x`.
    fn exact(c: &Case, x: &[f64], w: &[f32], r: usize, o: usize) -> f64 {
        (0..c.k).map(|i| x[i] * w[o * c.k + i] as f64).sum::<f64>()
            + c.b[o] as f64
            + c.res[r * c.n + o] as f64
    }

    /// What the scheme defines for row `r`: the inputs it multiplies (rounded as it
    /// rounds them) and the factor applied to the sums.
    fn definition(q: &PackedLinear, c: &Case, r: usize) -> (Vec<f64>, f64) {
        let row = &c.x[r * c.k..(r + 1) * c.k];
        match Inputs::prepare(q.scheme, row, c.k, q.padded_in()) {
            Inputs::F32(x) => (x.iter().map(|&v| v as f64).collect(), 1.0),
            Inputs::Bf16(x) => (x[..c.k].iter().map(|&v| widen(v) as f64).collect(), 1.0),
            Inputs::U8(x, s) => {
                let v = x[..c.k].iter().map(|&v| v as f64 - 128.0).collect();
                (v, s[0] as f64)
            }
            Inputs::I16(x, s) => (x[..c.k].iter().map(|&v| v as f64).collect(), s[0] as f64),
        }
    }

    /// Every scheme, on the portable loop and on each faster kernel this CPU has
    /// (AVX-512 registers, AMX tiles), computes its definition: the dequantized weights
    /// times the inputs as the scheme rounds them, plus bias and residual, within f32
    /// summation error. Integer sums are exact, so there every kernel agrees to the bit.
    #[test]
    fn each_scheme_computes_its_definition_on_each_kernel() {
        for scheme in SCHEMES {
            for c in cases() {
                let q = PackedLinear::pack(&c.w, Some(&c.b), c.n, scheme);
                let mut kernels = vec![Kernel::Portable];
                if scheme.is_fast_here() {
                    kernels.push(Kernel::Vector);
                }
                if scheme.has_tiles_here() && q.tiles_fit() {
                    kernels.push(Kernel::Tiles);
                }
                if c.rows == 1 {
                    println!("{scheme:?}: kernels on this CPU {kernels:?}");
                }
                let deq = q.dequantize();
                let outs: Vec<_> = kernels
                    .iter()
                    .map(|&kernel| (kernel, q.forward_on(&c.x, Some(&c.res), kernel, false)))
                    .collect();
                for r in 0..c.rows {
                    let (x, row_scale) = definition(&q, &c, r);
                    for o in 0..c.n {
                        let products = (0..c.k).map(|i| x[i] * deq[o * c.k + i] as f64);
                        let dot: f64 = products.clone().sum();
                        let mag: f64 = products.map(f64::abs).sum();
                        let want = dot * row_scale + c.b[o] as f64 + c.res[r * c.n + o] as f64;
                        let tol = 1e-6 * (mag * row_scale + want.abs() + 1.0);
                        for (kernel, y) in &outs {
                            let got = y[r * c.n + o];
                            assert!(
                                (got as f64 - want).abs() <= tol,
                                "{scheme:?} {kernel:?}: {got} vs {want}"
                            );
                            if scheme.is_int8() {
                                assert_eq!(got, outs[0].1[r * c.n + o], "integer sums are exact");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Against the f32 layer, each scheme stays within its rounding: half a step of each
    /// weight (int8: the channel's scale; bf16: 2⁻⁸ relative), and of each input where
    /// the scheme rounds them.
    #[test]
    fn stays_within_the_rounding_error_of_f32() {
        for scheme in SCHEMES {
            for c in cases() {
                let q = PackedLinear::pack(&c.w, Some(&c.b), c.n, scheme);
                let got = q.forward(&c.x, Some(&c.res));
                for r in 0..c.rows {
                    let x: Vec<f64> = c.x[r * c.k..(r + 1) * c.k]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    let xmax = x.iter().fold(0f64, |m, v| m.max(v.abs()));
                    for o in 0..c.n {
                        let w = &c.w[o * c.k..(o + 1) * c.k];
                        let sx: f64 = x.iter().map(|v| v.abs()).sum();
                        let sw: f64 = w.iter().map(|v| v.abs() as f64).sum();
                        let sxw: f64 = x.iter().zip(w).map(|(a, &b)| (a * b as f64).abs()).sum();
                        let bound = match scheme {
                            Scheme::Int8Weights => {
                                (0..c.k)
                                    .map(|i| x[i].abs() * q.scale(o, i) as f64 / 2.0)
                                    .sum::<f64>()
                                    + sw * xmax / 32767.0 / 2.0 * 1.01
                            }
                            Scheme::Int8Dynamic => {
                                sx * q.scales[o] as f64 / 2.0 + sw * xmax / 127.0 / 2.0 * 1.01
                            }
                            Scheme::Bf16Weights => sxw * 2f64.powi(-8),
                            Scheme::Bf16Dot => sxw * 2.0 * 2f64.powi(-8) * 1.01,
                        };
                        let want = exact(&c, &x, &c.w, r, o);
                        let g = got[r * c.n + o] as f64;
                        assert!(
                            (g - want).abs() <= bound + 1e-4 * (1.0 + want.abs()),
                            "{scheme:?}: {g} vs {want} (bound {bound})"
                        );
                    }
                }
            }
        }
    }

    /// GELU applied while writing is GELU of the product.
    #[test]
    fn gelu_follows_the_product() {
        for scheme in SCHEMES {
            for c in cases() {
                let q = PackedLinear::pack(&c.w, Some(&c.b), c.n, scheme);
                let plain = q.forward(&c.x, Some(&c.res));
                let fused = q.forward_then(&c.x, Some(&c.res), true);
                for (&p, &f) in plain.iter().zip(&fused) {
                    assert_eq!(crate::math::gelu(p), f, "{scheme:?}");
                }
            }
        }
    }

    /// The vectorisable rounding is `round_ties_even` clamped, and maps NaN inside.
    #[test]
    fn rounds_inputs_to_nearest_even_within_the_limit() {
        for v in [
            0.5f32, 1.5, 2.5, -0.5, -2.5, 126.49, 126.5, 127.6, -300.0, 3.3e7, 1e-30,
        ] {
            let want = v.round_ties_even().clamp(-127.0, 127.0) as i32;
            assert_eq!(round_clamped(v, 127.0), want, "{v}");
        }
        assert_eq!(round_clamped(f32::NAN, 127.0), -127);
        assert_eq!(round_clamped(f32::INFINITY, 32767.0), 32767);
    }

    #[test]
    fn weights_round_as_stated() {
        let w = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0];
        let q = PackedLinear::pack(&w, None, 2, Scheme::Int8Dynamic);
        assert_eq!(q.scales, [1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(q.row_sums, [64 - 127 + 32, 127 + 64]);
        let deq = q.dequantize();
        assert_eq!(deq[..4], [64.0 / 127.0, -1.0, 32.0 / 127.0, 0.0]);
        // 1 + 2⁻⁸ is a tie between bf16 neighbours: it rounds to the even one, 1.
        let w = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), -0.1, 3.0];
        let q = PackedLinear::pack(&w, None, 1, Scheme::Bf16Dot);
        let deq = q.dequantize();
        assert_eq!(deq[0], 1.0);
        assert_eq!(deq[1], 1.0 + 4.0 * 2f32.powi(-8));
        assert_eq!(deq[2], f32::from_bits(0xbdcd_0000));
        assert_eq!(deq[3], 3.0);
    }
}
