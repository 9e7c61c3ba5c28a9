//! N-gram counts of whitespace-split tokens, shared by BLEU and CIDEr. Words are
//! interned to numbers so that an n-gram is a small array, cheap to hash.

use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map keyed by small integers arrays or words, with a multiply-rotate hash:
/// scoring hashes millions of n-grams, and SipHash's resistance to crafted keys buys
/// nothing here.
pub type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<QuickHasher>>;

#[derive(Default, Clone, Copy)]
pub struct QuickHasher(u64);

impl QuickHasher {
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for QuickHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.mix(u64::from(b));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.mix(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.mix(x as u64);
    }
}

/// The largest n-gram order of BLEU-4 and CIDEr.
pub const N: usize = 4;

/// An n-gram of up to [`N`] interned words, padded with `u32::MAX`.
pub type Gram = [u32; N];

/// Word to number, for one evaluation.
#[derive(Default)]
pub struct Vocab<'a>(HashMap<&'a str, u32>);

impl<'a> Vocab<'a> {
    pub fn words(&mut self, text: &'a str) -> Vec<u32> {
        text.split_whitespace()
            .map(|w| {
                let next = self.0.len() as u32;
                *self.0.entry(w).or_insert(next)
            })
            .collect()
    }
}

/// The order (1..=4) of an n-gram.
pub fn order(g: &Gram) -> usize {
    g.iter().take_while(|&&w| w != u32::MAX).count()
}

/// Counts of every n-gram, n = 1..=4, in the order Python's dict of `precook` holds
/// them (by n, then by first position). That order fixes the float sums of CIDEr.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub grams: Vec<(Gram, u32)>,
    pub index: HashMap<Gram, usize>,
}

impl Counts {
    pub fn new(words: &[u32]) -> Self {
        let mut c = Self::default();
        for n in 1..=N {
            for w in words.windows(n) {
                let mut g = [u32::MAX; N];
                g[..n].copy_from_slice(w);
                match c.index.get(&g) {
                    Some(&i) => c.grams[i].1 += 1,
                    None => {
                        c.index.insert(g, c.grams.len());
                        c.grams.push((g, 1));
                    }
                }
            }
        }
        c
    }

    pub fn get(&self, g: &Gram) -> u32 {
        self.index.get(g).map_or(0, |&i| self.grams[i].1)
    }
}
