//! The reduced precisions' quality gate at BLIP-base's size: teacher-forced top-1
//! agreement with f32 on a random checkpoint with large margins (`captioner_bench::quality`;
//! `captioner bench --agreement` measures more positions).

use captioner::Precision;
use captioner_bench::quality::{agreement, AgreementOptions};

#[test]
fn reduced_precisions_pick_f32s_tokens_at_blip_base_size() {
    let (vision, text) = captioner_bench::blip_base_configs();
    let opts = AgreementOptions {
        images: 4,
        tokens: 25,
        seed: 1,
    };
    let results = agreement(&vision, &text, &[Precision::Bf16, Precision::Int8], &opts).unwrap();
    for a in &results {
        println!(
            "{}: top-1 {}/{}, logit error max {} mean {}, f32: logit std {}, median margin {}, {} distinct tokens",
            a.precision.describe(),
            a.agreeing,
            a.positions,
            a.max_logit_error,
            a.mean_logit_error,
            a.logit_std,
            a.median_margin,
            a.distinct_top1
        );
        // The reference is not degenerate: positions predict different tokens.
        assert!(
            a.distinct_top1 * 2 >= a.positions,
            "f32 predicts {} tokens",
            a.distinct_top1
        );
        // The gate: 99% of positions.
        assert!(
            a.agreeing * 100 >= 99 * a.positions,
            "{:?}: {}/{}",
            a.precision,
            a.agreeing,
            a.positions
        );
    }
}
