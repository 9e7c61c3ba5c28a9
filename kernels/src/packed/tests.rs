use super::*;

const SCHEMES: [Scheme; 4] = [
    Scheme::Int12Weights,
    Scheme::Int8Dynamic,
    Scheme::Bf16Weights,
    Scheme::Bf16Dot,
];

struct Case {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    res: Vec<f32>,
    rows: usize,
    k: usize,
    n: usize,
}

/// Row counts on both sides of a register block (8) and a parallel chunk (64),
/// inputs not a multiple of the groups, outputs not a multiple of a panel (48).
fn cases() -> Vec<Case> {
    [
        (1, 768, 80),
        (3, 48, 17),
        (7, 33, 70),
        (8, 64, 96),
        (9, 202, 24),
        (70, 64, 100),
        (40, 128, 50),
        (130, 21, 49),
    ]
    .into_iter()
    .map(|(rows, k, n)| Case {
        x: (0..rows * k)
            .map(|i| ((i * 37) % 19) as f32 / 7.0 - 1.2 + (i % 3) as f32 * 0.013)
            .collect(),
        w: (0..n * k)
            .map(|i| (((i * 53) % 23) as f32 / 11.0 - 1.0) * (1.0 + (i / k) as f32 / 10.0))
            .collect(),
        b: (0..n).map(|i| i as f32 * 0.25 - 3.0).collect(),
        res: (0..rows * n).map(|i| ((i * 7) % 5) as f32).collect(),
        rows,
        k,
        n,
    })
    .collect()
}

/// `x · w[o] + b + residual` in f64 over input row `x`.
fn exact(c: &Case, x: &[f64], w: &[f32], r: usize, o: usize) -> f64 {
    (0..c.k).map(|i| x[i] * w[o * c.k + i] as f64).sum::<f64>()
        + c.b[o] as f64
        + c.res[r * c.n + o] as f64
}

/// What the scheme defines for row `r`: the inputs it multiplies (rounded as it
/// rounds them) and the factor applied to the sums.
fn definition(q: &PackedLinear, c: &Case, r: usize) -> (Vec<f64>, f64) {
    let row = &c.x[r * c.k..(r + 1) * c.k];
    match Inputs::prepare(q.scheme, row, c.k, q.padded_in()) {
        Inputs::F32(x) => (x.iter().map(|&v| v as f64).collect(), 1.0),
        Inputs::Bf16(x) => (x[..c.k].iter().map(|&v| widen(v) as f64).collect(), 1.0),
        Inputs::U8(x, s) => {
            let v = x[..c.k].iter().map(|&v| v as f64 - 128.0).collect();
            (v, s[0] as f64)
        }
        Inputs::I16(x, s) => (x[..c.k].iter().map(|&v| v as f64).collect(), s[0] as f64),
    }
}

/// Every scheme, on the portable loop and on each faster kernel this CPU has
/// (AVX-512 registers, AMX tiles), computes its definition: the dequantized weights
/// times the inputs as the scheme rounds them, plus bias and residual, within f32
/// summation error. Integer sums are exact, so there every kernel agrees to the bit.
#[test]
fn each_scheme_computes_its_definition_on_each_kernel() {
    for scheme in SCHEMES {
        for c in cases() {
            let q = PackedLinear::pack(&c.w, Some(&c.b), c.n, scheme);
            let mut kernels = vec![Kernel::Portable];
            if scheme.is_fast_here() {
                kernels.push(Kernel::Vector);
            }
            if scheme.has_tiles_here() && q.tiles_fit() {
                kernels.push(Kernel::Tiles);
            }
            if c.rows == 1 {
                println!("{scheme:?}: kernels on this CPU {kernels:?}");
            }
            let deq = q.dequantize();
            let outs: Vec<_> = kernels
                .iter()
                .map(|&kernel| (kernel, q.forward_on(&c.x, Some(&c.res), kernel, false)))
                .collect();
            for r in 0..c.rows {
                let (x, row_scale) = definition(&q, &c, r);
                for o in 0..c.n {
                    let products = (0..c.k).map(|i| x[i] * deq[o * c.k + i] as f64);
                    let dot: f64 = products.clone().sum();
                    let mag: f64 = products.map(f64::abs).sum();
                    let want = dot * row_scale + c.b[o] as f64 + c.res[r * c.n + o] as f64;
                    let tol = 1e-6 * (mag * row_scale + want.abs() + 1.0);
                    for (kernel, y) in &outs {
                        let got = y[r * c.n + o];
                        assert!(
                            (got as f64 - want).abs() <= tol,
                            "{scheme:?} {kernel:?}: {got} vs {want}"
                        );
                        if scheme.is_integer() {
                            assert_eq!(got, outs[0].1[r * c.n + o], "integer sums are exact");
                        }
                    }
                }
            }
        }
    }
}

/// Against the f32 layer, each scheme stays within its rounding: half a step of each
/// weight (int8: the channel's scale; bf16: 2⁻⁸ relative), and of each input where
/// the scheme rounds them.
#[test]
fn stays_within_the_rounding_error_of_f32() {
    for scheme in SCHEMES {
        for c in cases() {
            let q = PackedLinear::pack(&c.w, Some(&c.b), c.n, scheme);
            let got = q.forward(&c.x, Some(&c.res));
            for r in 0..c.rows {
                let x: Vec<f64> = c.x[r * c.k..(r + 1) * c.k]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let xmax = x.iter().fold(0f64, |m, v| m.max(v.abs()));
                for o in 0..c.n {
                    let w = &c.w[o * c.k..(o + 1) * c.k];
                    let sx: f64 = x.iter().map(|v| v.abs()).sum();
                    let sw: f64 = w.iter().map(|v| v.abs() as f64).sum();
                    let sxw: f64 = x.iter().zip(w).map(|(a, &b)| (a * b as f64).abs()).sum();
                    let bound = match scheme {
                        Scheme::Int12Weights => {
                            (0..c.k)
                                .map(|i| x[i].abs() * q.scale(o, i) as f64 / 2.0)
                                .sum::<f64>()
                                + sw * xmax / 8191.0 / 2.0 * 1.01
                        }
                        Scheme::Int8Dynamic => {
                            sx * q.scales[o] as f64 / 2.0 + sw * xmax / 127.0 / 2.0 * 1.01
                        }
                        Scheme::Bf16Weights => sxw * 2f64.powi(-8),
                        Scheme::Bf16Dot => sxw * 2.0 * 2f64.powi(-8) * 1.01,
                    };
                    let want = exact(&c, &x, &c.w, r, o);
                    let g = got[r * c.n + o] as f64;
                    assert!(
                        (g - want).abs() <= bound + 1e-4 * (1.0 + want.abs()),
                        "{scheme:?}: {g} vs {want} (bound {bound})"
                    );
                }
            }
        }
    }
}

/// GELU applied while writing is GELU of the product.
#[test]
fn gelu_follows_the_product() {
    for scheme in SCHEMES {
        for c in cases() {
            let q = PackedLinear::pack(&c.w, Some(&c.b), c.n, scheme);
            let plain = q.forward(&c.x, Some(&c.res));
            let fused = q.forward_then(&c.x, Some(&c.res), true);
            for (&p, &f) in plain.iter().zip(&fused) {
                assert_eq!(crate::math::gelu(p), f, "{scheme:?}");
            }
        }
    }
}

/// The vectorisable rounding is `round_ties_even` clamped, and maps NaN inside.
#[test]
fn rounds_inputs_to_nearest_even_within_the_limit() {
    for v in [
        0.5f32, 1.5, 2.5, -0.5, -2.5, 126.49, 126.5, 127.6, -300.0, 3.3e7, 1e-30,
    ] {
        let want = v.round_ties_even().clamp(-127.0, 127.0) as i32;
        assert_eq!(round_clamped(v, 127.0), want, "{v}");
    }
    assert_eq!(round_clamped(f32::NAN, 127.0), -127);
    assert_eq!(round_clamped(f32::INFINITY, 32767.0), 32767);
}

#[test]
fn weights_round_as_stated() {
    let w = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0];
    let q = PackedLinear::pack(&w, None, 2, Scheme::Int8Dynamic);
    assert_eq!(q.scales, [1.0 / 127.0, 2.0 / 127.0]);
    assert_eq!(q.row_sums, [64 - 127 + 32, 127 + 64]);
    let deq = q.dequantize();
    assert_eq!(deq[..4], [64.0 / 127.0, -1.0, 32.0 / 127.0, 0.0]);
    // 12 bits: 2047 levels each side of zero, negative values' residuals counted up
    // from the floor of their high byte (-614 = -39 × 16 + 10).
    let w = [1.0f32, -1.0, 0.5, -0.3, 0.0, 2e-4, -1e-4, 0.999];
    let q = PackedLinear::pack(&w, None, 1, Scheme::Int12Weights);
    let levels = [2047, -2047, 1024, -614, 0, 0, 0, 2045];
    let deq = q.dequantize();
    for (d, l) in deq.iter().zip(levels) {
        assert_eq!(*d, l as f32 * (1.0 / 2047.0));
    }
    let Weights::I12(high, low) = &q.weights else {
        panic!("12-bit weights")
    };
    assert_eq!(
        (high[q.index(0, 3)], low[residual_at(q.index(0, 3)).0] >> 4),
        (-39, 10)
    );
    // 1 + 2⁻⁸ is a tie between bf16 neighbours: it rounds to the even one, 1.
    let w = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), -0.1, 3.0];
    let q = PackedLinear::pack(&w, None, 1, Scheme::Bf16Dot);
    let deq = q.dequantize();
    assert_eq!(deq[0], 1.0);
    assert_eq!(deq[1], 1.0 + 4.0 * 2f32.powi(-8));
    assert_eq!(deq[2], f32::from_bits(0xbdcd_0000));
    assert_eq!(deq[3], 3.0);
}
