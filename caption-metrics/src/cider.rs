//! CIDEr-D as pycocoevalcap computes it (`Cider()`: n = 1..4, sigma 6). Document
//! frequencies come from the references of the images being scored, so scores depend on
//! the whole set (and one image alone always scores 0). Each candidate and reference is
//! a tf-idf vector per n; their similarity is clipped (`min(h, r) * r`), divided by both
//! norms, and damped by a Gaussian of their length difference, where "length" is the
//! count of bigrams, as in pycocoevalcap.
//!
//! Sums run in pycocoevalcap's order (n-grams by n, then by first position), so that
//! scores agree to the last bit, denormals included.

use super::ngrams::{order, Counts, Gram, HashMap, N};

const SIGMA: f64 = 6.0;

/// One caption's tf-idf vectors (all orders in one list, in `Counts` order), their
/// norms per order, and its bigram count.
struct Vector {
    weights: Vec<(Gram, f64)>,
    index: HashMap<Gram, f64>,
    norm: [f64; N],
    length: f64,
}

impl Vector {
    fn new(counts: &Counts, df: &HashMap<Gram, u32>, log_n: f64) -> Self {
        let mut weights = Vec::with_capacity(counts.grams.len());
        let mut norm = [0.0; N];
        let mut length = 0u64;
        for (g, tf) in &counts.grams {
            let df = df.get(g).copied().unwrap_or(0).max(1) as f64;
            let w = *tf as f64 * (log_n - df.ln());
            let n = order(g) - 1;
            norm[n] += w * w;
            if n == 1 {
                length += *tf as u64;
            }
            weights.push((*g, w));
        }
        Self {
            index: weights.iter().copied().collect(),
            weights,
            norm: norm.map(f64::sqrt),
            length: length as f64,
        }
    }

    /// Similarity per order with one reference, Gaussian length penalty included.
    fn sim(&self, r: &Self) -> [f64; N] {
        let mut val = [0.0; N];
        for (g, h) in &self.weights {
            let rv = r.index.get(g).copied().unwrap_or(0.0);
            val[order(g) - 1] += h.min(rv) * rv;
        }
        let delta = self.length - r.length;
        // Python's `np.e ** x`, a pow rather than an exp: they can differ in the last bit.
        let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
        for (n, v) in val.iter_mut().enumerate() {
            if self.norm[n] != 0.0 && r.norm[n] != 0.0 {
                *v /= self.norm[n] * r.norm[n];
            }
            *v *= penalty;
        }
        val
    }
}

/// Per-image CIDEr-D of candidates against their references (n-gram counts).
pub fn cider(cands: &[Counts], refs: &[Vec<Counts>]) -> Vec<f64> {
    let mut df: HashMap<Gram, u32> = HashMap::default();
    for image in refs {
        let mut seen: Vec<&Gram> = image
            .iter()
            .flat_map(|r| r.grams.iter().map(|(g, _)| g))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for g in seen {
            *df.entry(*g).or_insert(0) += 1;
        }
    }
    let log_n = (refs.len() as f64).ln();
    cands
        .iter()
        .zip(refs)
        .map(|(c, rs)| {
            let v = Vector::new(c, &df, log_n);
            let mut score = [0.0; N];
            for r in rs {
                let s = v.sim(&Vector::new(r, &df, log_n));
                (0..N).for_each(|n| score[n] += s[n]);
            }
            // np.mean of four values sums them in order from 0.
            let mean = score.iter().fold(0.0, |a, s| a + s) / N as f64;
            mean / rs.len() as f64 * 10.0
        })
        .collect()
}
