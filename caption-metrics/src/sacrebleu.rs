//! sacreBLEU's default corpus BLEU (`sacrebleu.corpus_bleu` with its defaults): the
//! `13a` tokenizer on raw, case-kept text, clipped n-gram matches pooled over the
//! corpus, the closest reference length, and `exp` smoothing of zero-match orders. The
//! score is on sacreBLEU's 0-100 scale.

use super::ngrams::{order, Counts, Gram, HashMap, Vocab, N};

/// What `corpus_bleu` reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SacreBleu {
    pub score: f64,
    pub counts: [usize; N],
    pub totals: [usize; N],
    pub precisions: [f64; N],
    pub bp: f64,
    pub sys_len: usize,
    pub ref_len: usize,
}

/// The `13a` tokenization (mteval-v13a's), with Python's whitespace splitting.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // Every symbol but `.`, `,` and `-` (and letters, digits, `'`) is split off.
    let mut s = Vec::with_capacity(chars.len() * 2);
    for c in chars {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            s.extend([' ', c, ' ']);
        } else {
            s.push(c);
        }
    }
    // Three left-to-right, non-overlapping rewrites, as Python's re.sub makes them.
    let s = rewrite(
        &s,
        |a, b| !a.is_ascii_digit() && matches!(b, '.' | ','),
        |a, b| [a, ' ', b, ' '].to_vec(),
    );
    let s = rewrite(
        &s,
        |a, b| matches!(a, '.' | ',') && !b.is_ascii_digit(),
        |a, b| [' ', a, ' ', b].to_vec(),
    );
    let s = rewrite(
        &s,
        |a, b| a.is_ascii_digit() && b == '-',
        |a, b| [a, ' ', b, ' '].to_vec(),
    );
    let s: String = s.into_iter().collect();
    s.split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces each match of a two-character pattern, scanning as a regex substitution
/// does: after a match, the search goes on after its second character.
fn rewrite(
    s: &[char],
    hit: impl Fn(char, char) -> bool,
    with: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && hit(s[i], s[i + 1]) {
            out.extend(with(s[i], s[i + 1]));
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `str.split()`'s whitespace: Unicode's, plus the ASCII separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Corpus BLEU of one hypothesis per segment against that segment's references (any
/// number of them, at least one).
pub fn corpus_bleu(hyps: &[&str], refs: &[Vec<&str>]) -> SacreBleu {
    let prep = |s: &str| tokenize_13a(s.trim_end_matches(is_python_space));
    let hyps: Vec<String> = hyps.iter().map(|h| prep(h)).collect();
    let refs: Vec<Vec<String>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| prep(r)).collect())
        .collect();
    let mut vocab = Vocab::default();
    let (mut counts, mut totals) = ([0usize; N], [0usize; N]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (h, rs) in hyps.iter().zip(&refs) {
        let hw = vocab.words(h);
        let mut clip: HashMap<Gram, u32> = HashMap::default();
        let mut lens = Vec::with_capacity(rs.len());
        for r in rs {
            let rw = vocab.words(r);
            lens.push(rw.len());
            for (g, c) in Counts::new(&rw).grams {
                let m = clip.entry(g).or_insert(0);
                *m = (*m).max(c);
            }
        }
        for (g, c) in Counts::new(&hw).grams {
            counts[order(&g) - 1] += c.min(clip.get(&g).copied().unwrap_or(0)) as usize;
        }
        for (k, t) in totals.iter_mut().enumerate() {
            *t += hw.len().saturating_sub(k);
        }
        sys_len += hw.len();
        // The closest reference length, the shorter on a tie.
        ref_len += lens
            .iter()
            .copied()
            .min_by_key(|&l| (l.abs_diff(hw.len()), l))
            .unwrap_or(0);
    }
    score(counts, totals, sys_len, ref_len)
}

fn score(counts: [usize; N], totals: [usize; N], sys_len: usize, ref_len: usize) -> SacreBleu {
    let mut precisions = [0.0; N];
    let mut smooth = 1.0;
    for n in 0..N {
        if totals[n] == 0 {
            break;
        }
        precisions[n] = if counts[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * totals[n] as f64)
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
    }
    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };
    // log(0) is sacreBLEU's -9999999999, which sends the score to 0.
    let logs = precisions.iter().fold(0.0, |a, &p| {
        a + if p == 0.0 { -9_999_999_999.0 } else { p.ln() }
    });
    SacreBleu {
        score: bp * (logs / N as f64).exp(),
        counts,
        totals,
        precisions,
        bp,
        sys_len,
        ref_len,
    }
}
