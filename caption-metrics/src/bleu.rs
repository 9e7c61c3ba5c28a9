//! BLEU-1..4 as pycocoevalcap computes it: clipped n-gram matches against each image's
//! references, the closest reference length (the shorter on a tie), counts pooled over
//! the corpus, and its epsilons (1e-15 on matches, 1e-9 on guesses and lengths), which
//! also give the per-image values their odd floors.

use super::ngrams::{order, Counts, Gram, HashMap, N};

const TINY: f64 = 1e-15;
const SMALL: f64 = 1e-9;

/// The counts behind BLEU, for one caption or pooled over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BleuStats {
    pub testlen: usize,
    pub reflen: usize,
    /// n-grams in the candidate, n = 1..=4.
    pub guess: [usize; N],
    /// Of those, how many the references hold (clipped).
    pub correct: [usize; N],
}

impl BleuStats {
    /// One candidate (its words and counts) against its references' word counts and
    /// n-gram counts.
    pub fn new(testlen: usize, cand: &Counts, reflens: &[usize], refs: &[Counts]) -> Self {
        let mut clip: HashMap<Gram, u32> = HashMap::default();
        for r in refs {
            for (g, c) in &r.grams {
                let m = clip.entry(*g).or_insert(0);
                *m = (*m).max(*c);
            }
        }
        let mut correct = [0; N];
        for (g, c) in &cand.grams {
            correct[order(g) - 1] += (*c).min(clip.get(g).copied().unwrap_or(0)) as usize;
        }
        // Python's min over (|l - testlen|, l) tuples: the shorter reference on a tie.
        let reflen = reflens
            .iter()
            .copied()
            .min_by_key(|&l| (l.abs_diff(testlen), l))
            .unwrap_or(0);
        Self {
            testlen,
            reflen,
            guess: std::array::from_fn(|k| testlen.saturating_sub(k)),
            correct,
        }
    }

    pub fn add(&mut self, o: &Self) {
        self.testlen += o.testlen;
        self.reflen += o.reflen;
        for k in 0..N {
            self.guess[k] += o.guess[k];
            self.correct[k] += o.correct[k];
        }
    }

    /// Bleu_1..Bleu_4 of these counts, in pycocoevalcap's order of operations.
    pub fn scores(&self) -> [f64; N] {
        let mut out = [0.0; N];
        let mut product = 1.0;
        for (k, b) in out.iter_mut().enumerate() {
            product *= (self.correct[k] as f64 + TINY) / (self.guess[k] as f64 + SMALL);
            *b = product.powf(1.0 / (k + 1) as f64);
        }
        let ratio = (self.testlen as f64 + TINY) / (self.reflen as f64 + SMALL);
        if ratio < 1.0 {
            let bp = (1.0 - 1.0 / ratio).exp();
            out.iter_mut().for_each(|b| *b *= bp);
        }
        out
    }
}
