//! The ViT's self-attention with bf16 products on AMX tiles, for the reduced
//! precisions: queries, keys, values and the probabilities rounded to bf16, the scores,
//! softmax and context summed and kept in f32.
//!
//! In f32 the two products of each head cost the encoder a third of its time beside
//! bf16 linear layers, although they are a tenth of its arithmetic. Each (image, head)'s
//! keys and values are packed once into the tiles' layout (pairs of inputs side by side
//! in each column); then every 16 queries take one pass over the keys for their scores
//! and one over the values for their context.

use rayon::prelude::*;

use super::Shared;
use crate::math::softmax_in_place;
use crate::packed::{amx, bf16, round_row_bf16};

/// Rows of a tile, and columns of f32 sums.
const ROWS: usize = 16;
/// bf16 values in one tile (16 rows of 64 bytes).
const TILE: usize = amx::TILE_BYTES / 2;
/// Tiles of 16 queries per parallel task.
const TILES_PER_TASK: usize = 6;
/// Inputs summed per step (a tile row: 32 bf16).
const STEP: usize = 32;

/// Whether [`packed_self_attention_bf16`] runs here for heads of `head_dim`: the CPU
/// has AMX-BF16, and a head is one or two steps of 32 (its context at most four tiles).
pub(super) fn serve(head_dim: usize) -> bool {
    crate::packed::has_bf16_tiles() && (head_dim == 32 || head_dim == 64)
}

/// [`super::packed_self_attention_bf16`] on this CPU.
pub(super) fn packed_self_attention_bf16(
    qkv: &[f32],
    (batch, t): (usize, usize),
    heads: usize,
    scale: f32,
) -> Vec<f32> {
    let (d, hd) = super::qkv_dims(qkv, (batch, t), heads);
    assert!(serve(hd), "no bf16 tiles for heads of {hd} here");
    let shape = Shape::new(t, hd);
    let mut keys = vec![0u16; batch * heads * shape.keys_len()];
    let mut values = vec![0u16; batch * heads * shape.values_len()];
    keys.par_chunks_mut(shape.keys_len())
        .zip(values.par_chunks_mut(shape.values_len()))
        .enumerate()
        .for_each(|(bh, (k, v))| {
            let (b, h) = (bh / heads, bh % heads);
            let rows = |part: usize| {
                let base = b * t * 3 * d + part * d + h * hd;
                (0..t).map(move |i| &qkv[base + i * 3 * d..base + i * 3 * d + hd])
            };
            shape.pack_keys(rows(1), k);
            shape.pack_values(rows(2), v);
        });

    let tiles = t.div_ceil(ROWS);
    let blocks = tiles.div_ceil(TILES_PER_TASK);
    let task = |b: usize, h: usize, blk: usize, out: Shared| {
        let bh = b * heads + h;
        let k = &keys[bh * shape.keys_len()..(bh + 1) * shape.keys_len()];
        let v = &values[bh * shape.values_len()..(bh + 1) * shape.values_len()];
        let mut work = Work::new(&shape);
        for tile in blk * TILES_PER_TASK..((blk + 1) * TILES_PER_TASK).min(tiles) {
            let q0 = tile * ROWS;
            let m = ROWS.min(t - q0);
            let base = (b * t + q0) * 3 * d + h * hd;
            let queries = (0..m).map(|i| &qkv[base + i * 3 * d..base + i * 3 * d + hd]);
            let context = work.attend(&shape, queries, scale, k, v);
            for (i, row) in context.chunks_exact(hd).take(m).enumerate() {
                // SAFETY: row q0 + i of image b, head h's columns: this task's alone.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out.at((b * t + q0 + i) * d + h * hd), hd)
                };
                dst.copy_from_slice(row);
            }
        }
    };
    // SAFETY: the blocks of tiles cover every query of every (image, head).
    unsafe { super::by_blocks((batch, t, d), heads, blocks, task) }
}

/// One head's sizes: `t` keys padded to whole tiles for the scores (`key_pad`) and to
/// whole steps for the context (`value_pad`).
struct Shape {
    t: usize,
    hd: usize,
    key_pad: usize,
    value_pad: usize,
}

impl Shape {
    fn new(t: usize, hd: usize) -> Self {
        Self {
            t,
            hd,
            key_pad: t.next_multiple_of(ROWS),
            value_pad: t.next_multiple_of(STEP),
        }
    }

    fn key_steps(&self) -> usize {
        self.hd / STEP
    }

    fn value_tiles(&self) -> usize {
        self.hd / ROWS
    }

    fn keys_len(&self) -> usize {
        self.key_pad * self.hd
    }

    fn values_len(&self) -> usize {
        self.value_pad * self.hd
    }

    /// Keys as the scores' columns: per tile of 16 keys, one tile per step of 32
    /// dimensions, whose row `r` holds dimensions `2r, 2r + 1` of each key (a 16 × 16
    /// transpose of the keys' bf16 pairs). Padding keys stay zero.
    fn pack_keys<'a>(&self, rows: impl Iterator<Item = &'a [f32]>, out: &mut [u16]) {
        let mut block = vec![0u16; ROWS * self.hd];
        let rows: Vec<&[f32]> = rows.collect();
        for (j, keys) in rows.chunks(ROWS).enumerate() {
            for (b, row) in block.chunks_exact_mut(self.hd).zip(keys) {
                round_row_bf16(row, b);
            }
            let tiles = &mut out[j * self.key_steps() * TILE..][..self.key_steps() * TILE];
            for (p, dst) in tiles.chunks_exact_mut(2 * ROWS).enumerate() {
                for (n, d) in dst.chunks_exact_mut(2).enumerate().take(keys.len()) {
                    d.copy_from_slice(&block[n * self.hd + 2 * p..][..2]);
                }
            }
        }
    }

    /// Values as the context's columns: per step of 32 keys, one tile per 16 dimensions,
    /// whose row `r` interleaves keys `2r` and `2r + 1` dimension by dimension. Padding
    /// keys stay zero.
    fn pack_values<'a>(&self, rows: impl Iterator<Item = &'a [f32]>, out: &mut [u16]) {
        let nt = self.value_tiles();
        let mut pair = vec![0u16; 2 * self.hd];
        let rows: Vec<&[f32]> = rows.collect();
        for (k, two) in rows.chunks(2).enumerate() {
            let (s, r) = (k / ROWS, k % ROWS);
            pair.fill(0);
            for (b, row) in pair.chunks_exact_mut(self.hd).zip(two) {
                round_row_bf16(row, b);
            }
            let (first, second) = pair.split_at(self.hd);
            for c in 0..nt {
                let dst = &mut out[(s * nt + c) * TILE + r * STEP..][..STEP];
                for (n, d) in dst.chunks_exact_mut(2).enumerate() {
                    d[0] = first[c * ROWS + n];
                    d[1] = second[c * ROWS + n];
                }
            }
        }
    }
}

/// A task's buffers for 16 queries: the queries and probabilities in bf16 (rows the
/// tiles read), the scores and the context in f32.
struct Work {
    queries: Vec<u16>,
    scores: Vec<f32>,
    probs: Vec<u16>,
    context: Vec<f32>,
}

impl Work {
    fn new(shape: &Shape) -> Self {
        Self {
            queries: vec![0; ROWS * shape.hd],
            scores: vec![0.0; ROWS * shape.key_pad],
            probs: vec![0; ROWS * shape.value_pad],
            context: vec![0.0; ROWS * shape.hd],
        }
    }

    /// The context `[16, hd]` of up to 16 `queries` over one head's packed keys and
    /// values (rows past the queries' are left over from before: computed, not used).
    fn attend<'a>(
        &mut self,
        shape: &Shape,
        queries: impl Iterator<Item = &'a [f32]>,
        scale: f32,
        keys: &[u16],
        values: &[u16],
    ) -> &[f32] {
        let (hd, t) = (shape.hd, shape.t);
        let mut m = 0;
        for (q, row) in self.queries.chunks_exact_mut(hd).zip(queries) {
            round_row_bf16(row, q);
            m += 1;
        }
        // SAFETY: the tiles are granted (`serve`); 16 query rows of hd, the key tiles'
        // steps, and 16 score rows of key_pad are all within their buffers.
        unsafe {
            amx::bf16_scores(
                self.queries.as_ptr().cast(),
                2 * hd,
                keys.as_ptr().cast(),
                shape.key_steps(),
                shape.key_pad / ROWS,
                self.scores.as_mut_ptr().cast(),
                4 * shape.key_pad,
            );
        }
        for (s, p) in self
            .scores
            .chunks_exact_mut(shape.key_pad)
            .zip(self.probs.chunks_exact_mut(shape.value_pad))
            .take(m)
        {
            // Columns past t stay zero from the start.
            probabilities(&mut s[..t], scale, p);
        }
        // SAFETY: as above: 16 probability rows of value_pad, the value tiles of every
        // step, and the 16 × hd context.
        unsafe {
            amx::bf16_columns(
                self.probs.as_ptr().cast(),
                2 * shape.value_pad,
                values.as_ptr().cast(),
                shape.value_tiles(),
                shape.value_pad / STEP,
                shape.value_tiles(),
                self.context.as_mut_ptr().cast(),
                4 * hd,
            );
        }
        &self.context
    }
}

multiversion! {
    /// `softmax(scale × scores)` in f32, rounded to bf16 into `probs`.
    fn probabilities(scores: &mut [f32], scale: f32, probs: &mut [u16]) {
        scores.iter_mut().for_each(|x| *x *= scale);
        softmax_in_place(scores);
        for (p, &x) in probs.iter_mut().zip(scores.iter()) {
            *p = bf16(x);
        }
    }
}
