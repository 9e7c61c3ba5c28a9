//! CPU f32 kernels for inference, and their differentiable twins for training.
//!
//! candle runs a transformer layer as a chain of ops that each allocate a zeroed output
//! and make a full pass over memory, with scalar `exp` and `erf`. On this path those
//! passes cost as much as a third of the matmul time, so the hot loops live here
//! instead, on plain slices: a linear layer writes its bias (and residual) once and lets
//! gemm accumulate onto it, attention runs per (image, head, block of queries) with the
//! scores kept in cache, and `exp`/`erf` are branch-free polynomials the compiler
//! vectorises for the CPU found at run time. [`packed`] and [`cached_kv`] hold weights,
//! keys and values in bf16 or int8 for faster, smaller inference, on the instructions
//! this CPU has (AVX-512, VNNI, AVX512_BF16, AMX), with a portable path everywhere.
//!
//! None of this has a backward pass. Training takes [`autograd`]'s ops instead: the
//! same layers as single candle ops with hand-written backward passes.

#[macro_use]
mod simd;
pub mod attention;
pub mod autograd;
pub mod cached_kv;
pub mod linear;
pub mod math;
pub mod packed;
mod tensor;

pub use tensor::{
    cpu_f32, dense, from_vec, inference_on_cpu, layer_norm, linear, linear_op, softmax_last_dim,
    CpuF32, Dense,
};

/// Runs `f` on one of rayon's worker threads, inline when the caller already is one.
///
/// A model's forward pass opens one parallel region per product, about a hundred per
/// decoding step. Opened from outside the pool, each is injected into it and the caller
/// sleeps until a worker has finished it: on two threads that cost a tenth of greedy
/// decoding's time and of the vision encoder's. Opened from a worker, each is a fork
/// that worker takes part in.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
