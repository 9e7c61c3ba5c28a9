//! ROUGE_L as pycocoevalcap computes it: the longest common subsequence against each
//! reference, precision and recall each maximised over the references on its own, and
//! an F-measure with beta 1.2. Tokens are split on single spaces, so an empty caption is
//! one empty token.

const BETA: f64 = 1.2;

pub fn rouge_l(cand: &str, refs: &[&str]) -> f64 {
    let c: Vec<&str> = cand.split(' ').collect();
    let (mut prec, mut rec) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for r in refs {
        let r: Vec<&str> = r.split(' ').collect();
        let lcs = lcs(&r, &c) as f64;
        prec = prec.max(lcs / c.len() as f64);
        rec = rec.max(lcs / r.len() as f64);
    }
    if prec == 0.0 || rec == 0.0 || refs.is_empty() {
        return 0.0;
    }
    let b2 = BETA * BETA;
    ((1.0 + b2) * prec * rec) / (rec + b2 * prec)
}

/// Length of the longest common subsequence, one row of the table at a time.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}
