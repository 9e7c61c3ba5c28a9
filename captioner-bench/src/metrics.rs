//! The COCO caption evaluation of synthetic captions, as
//! `scripts/bench_pycocoevalcap.py` times pycocoevalcap on the same files.

use crate::{time, BenchCase, BenchOptions};

/// Words for synthetic captions: COCO-like nouns, verbs and the like.
const WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "man",
    "woman",
    "dog",
    "cat",
    "horse",
    "bus",
    "train",
    "kitchen",
    "table",
    "plate",
    "pizza",
    "street",
    "beach",
    "field",
    "sitting",
    "standing",
    "riding",
    "holding",
    "eating",
    "on",
    "in",
    "with",
    "next",
    "to",
    "of",
    "near",
    "top",
    "red",
    "blue",
    "white",
    "large",
    "small",
    "two",
    "three",
    "people",
    "group",
    "young",
    "boy",
    "girl",
    "skateboard",
    "surfboard",
    "wave",
    "snow",
    "grass",
    "water",
    "window",
    "bed",
    "room",
    "clock",
    "tower",
    "phone",
    "laptop",
    "bench",
    "park",
    "tennis",
    "racket",
    "ball",
    "giraffe",
    "elephant",
    "zebra",
    "sheep",
    "cow",
    "bird",
    "sky",
    "kite",
    "umbrella",
];

/// `images` images, each with `refs` reference captions and one candidate, drawn from
/// a fixed word list by a fixed generator: capitalised, some with commas and a final period.
pub fn synthetic_captions(images: usize, refs: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut caption = || {
        let len = 7 + next(8);
        let mut words: Vec<String> = (0..len)
            .map(|_| WORDS[next(WORDS.len())].to_string())
            .collect();
        if next(4) == 0 {
            words[len / 2].push(',');
        }
        words[0] = words[0][..1].to_uppercase() + &words[0][1..];
        let mut s = words.join(" ");
        if next(2) == 0 {
            s.push('.');
        }
        s
    };
    let refs: Vec<Vec<String>> = (0..images)
        .map(|_| (0..refs).map(|_| caption()).collect())
        .collect();
    // A candidate is a reference of another draw with about a third of its words
    // replaced, so that scores land in a realistic range.
    let cands = refs
        .iter()
        .map(|rs| {
            let words: Vec<String> = rs[next(rs.len())]
                .split(' ')
                .map(|w| match next(3) {
                    0 => WORDS[next(WORDS.len())].to_string(),
                    _ => w.to_string(),
                })
                .collect();
            words.join(" ")
        })
        .collect();
    (cands, refs)
}

/// Times the COCO caption evaluation (tokenization and all metrics) of `images`
/// synthetic images with `refs` references each.
pub fn run_metrics(opts: &BenchOptions, images: usize, refs: usize) -> BenchCase {
    let (cands, references) = synthetic_captions(images, refs);
    let seconds = time(opts.warmup, opts.runs, || {
        let c = caption_metrics::tokenize_all(&cands);
        let r = caption_metrics::tokenize_refs(&references);
        Ok(caption_metrics::evaluate(&c, &r))
    })
    .expect("scoring cannot fail");
    BenchCase {
        name: format!("score {images} images x {refs} refs"),
        batch: images,
        seconds,
    }
}
