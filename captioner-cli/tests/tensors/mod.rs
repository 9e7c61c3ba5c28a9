//! Comparing tensors in the tests that need candle (`tests/common` also serves the
//! datasets crate's tests, which do not).

use candle_core::Tensor;

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest difference relative to the largest magnitude of `want` (gradients of
/// different tensors differ in scale by orders of magnitude).
pub fn rel_diff(got: &Tensor, want: &Tensor) -> f32 {
    max_abs(&(got - want).unwrap()) / max_abs(want).max(1e-12)
}
