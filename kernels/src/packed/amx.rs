//! Intel's tile instructions (AMX), through assembly: the tile registers are the
//! whole machine state they touch, and no other code of the process uses them.

use std::arch::asm;

use super::{NR, TILE_ROWS};

/// Whether AMX-INT8 and AMX-BF16 may run: the CPU has them (CPUID leaf 7) and Linux
/// grants this process the tile data state.
pub(super) fn available(avx512: bool) -> (bool, bool) {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaf 7 exists on every x86-64 CPU with AVX-512.
    let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
    let (tile, bf16, int8) = (edx >> 24 & 1 == 1, edx >> 22 & 1 == 1, edx >> 25 & 1 == 1);
    if !(avx512 && tile && (bf16 || int8) && cfg!(target_os = "linux")) {
        return (false, false);
    }
    let granted: i64;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) only changes which
    // register state this process may use; it fails harmlessly where unsupported.
    unsafe {
        asm!("syscall", inlateout("rax") 158i64 => granted, in("rdi") 0x1023i64,
             in("rsi") 18i64, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    (granted == 0 && int8, granted == 0 && bf16)
}

/// Sets all eight tile registers to 16 rows of 64 bytes, and clears the sums' tiles
/// (tmm0-3).
///
/// # Safety
/// The process must have AMX granted.
unsafe fn configure() {
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    for t in 0..8 {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = TILE_ROWS as u8;
    }
    // SAFETY: a valid palette-1 configuration; the caller has AMX.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }
}

/// Bytes between a panel's rows of packed groups (`NR` channels × 4 bytes).
const B_STRIDE: usize = NR * 4;

/// Sums of 16 input rows `a` (`row_bytes` apart, packed as the weights are) with one
/// panel `b`, into `out` `[16][NR]` (f32, or i32 for int8): tmm0-2 hold the sums
/// of three groups of 16 channels, tmm3 the inputs, tmm4-6 the weights.
///
/// # Safety
/// The process must have AMX-INT8 (`INT8`) or AMX-BF16 granted; `a` holds 16 rows
/// of `row_bytes` (a multiple of 64), `b` the panel of `NR × row_bytes` bytes and
/// `out` room for `16 × NR` values.
pub(super) unsafe fn product<const INT8: bool>(
    b: *const u8,
    a: *const u8,
    row_bytes: usize,
    out: *mut u8,
) {
    // SAFETY: the caller's contract; every tile is 16 rows of 64 bytes, read and
    // written with the strides that lay them out.
    unsafe {
        configure();
        for s in 0..row_bytes / 64 {
            let w = b.add(s * TILE_ROWS * B_STRIDE);
            asm!("tileloadd tmm3, [{a} + {sa} * 1]",
                 "tileloadd tmm4, [{w} + {sb} * 1]",
                 "tileloadd tmm5, [{w} + {sb} * 1 + 64]",
                 "tileloadd tmm6, [{w} + {sb} * 1 + 128]",
                 a = in(reg) a.add(64 * s), sa = in(reg) row_bytes,
                 w = in(reg) w, sb = in(reg) B_STRIDE, options(nostack, readonly));
            if INT8 {
                asm!(
                    "tdpbusd tmm0, tmm3, tmm4",
                    "tdpbusd tmm1, tmm3, tmm5",
                    "tdpbusd tmm2, tmm3, tmm6",
                    options(nostack, nomem)
                );
            } else {
                asm!(
                    "tdpbf16ps tmm0, tmm3, tmm4",
                    "tdpbf16ps tmm1, tmm3, tmm5",
                    "tdpbf16ps tmm2, tmm3, tmm6",
                    options(nostack, nomem)
                );
            }
        }
        asm!("tilestored [{o} + {s} * 1], tmm0",
             "tilestored [{o} + {s} * 1 + 64], tmm1",
             "tilestored [{o} + {s} * 1 + 128], tmm2",
             o = in(reg) out, s = in(reg) NR * 4, options(nostack));
    }
}

/// Bytes of one tile: 16 rows of 64.
pub(crate) const TILE_BYTES: usize = 1024;

/// `out` = 16 rows of bf16 inputs `a` times `nt` (1 to 4) tiles of 16 columns of `b`,
/// summed in f32 over `ksteps` steps of 32 inputs. Row `i` of `a` starts `i × a_stride`
/// bytes in, step `s` 64 bytes further each. `b` holds one tile (16 rows of 16
/// column pairs, 64 bytes a row) per step and column tile, `step_tiles` tiles a step:
/// tile `(s, c)` at `(s × step_tiles + c) × 1024` bytes. Column tile `c` of the f32 sums
/// goes to `out + 64c`, rows `out_stride` bytes apart: tmm0-3 hold the sums, tmm4 the
/// inputs, tmm5-7 the columns.
///
/// # Safety
/// The process must have AMX-BF16 granted, and every pointer must be valid for what
/// the strides and counts reach.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn bf16_columns(
    a: *const u8,
    a_stride: usize,
    b: *const u8,
    step_tiles: usize,
    ksteps: usize,
    nt: usize,
    out: *mut u8,
    out_stride: usize,
) {
    debug_assert!((1..=4).contains(&nt) && nt <= step_tiles);
    // SAFETY: the caller's contract.
    unsafe {
        configure();
        for s in 0..ksteps {
            let w = b.add(s * step_tiles * TILE_BYTES);
            asm!("tileloadd tmm4, [{a} + {sa} * 1]",
                 "tileloadd tmm5, [{w} + {sb} * 1]",
                 "tdpbf16ps tmm0, tmm4, tmm5",
                 a = in(reg) a.add(64 * s), sa = in(reg) a_stride,
                 w = in(reg) w, sb = in(reg) 64usize, options(nostack, readonly));
            if nt > 1 {
                asm!("tileloadd tmm6, [{w} + {sb} * 1 + 1024]",
                     "tdpbf16ps tmm1, tmm4, tmm6",
                     w = in(reg) w, sb = in(reg) 64usize, options(nostack, readonly));
            }
            if nt > 2 {
                asm!("tileloadd tmm7, [{w} + {sb} * 1 + 2048]",
                     "tdpbf16ps tmm2, tmm4, tmm7",
                     w = in(reg) w, sb = in(reg) 64usize, options(nostack, readonly));
            }
            if nt > 3 {
                asm!("tileloadd tmm5, [{w} + {sb} * 1 + 3072]",
                     "tdpbf16ps tmm3, tmm4, tmm5",
                     w = in(reg) w, sb = in(reg) 64usize, options(nostack, readonly));
            }
        }
        asm!("tilestored [{o} + {s} * 1], tmm0",
             o = in(reg) out, s = in(reg) out_stride, options(nostack));
        if nt > 1 {
            asm!("tilestored [{o} + {s} * 1 + 64], tmm1",
                 o = in(reg) out, s = in(reg) out_stride, options(nostack));
        }
        if nt > 2 {
            asm!("tilestored [{o} + {s} * 1 + 128], tmm2",
                 o = in(reg) out, s = in(reg) out_stride, options(nostack));
        }
        if nt > 3 {
            asm!("tilestored [{o} + {s} * 1 + 192], tmm3",
                 o = in(reg) out, s = in(reg) out_stride, options(nostack));
        }
    }
}

/// One tile of sums: `acc` cleared, then `a0 × b` (and `a1 ×` the next tile when
/// `two`), stored at `out` with rows `stride` bytes apart.
macro_rules! scores_tile {
    ($acc:literal, $b:expr, $two:expr, $out:expr, $stride:expr) => {{
        asm!(concat!("tilezero tmm", $acc),
             "tileloadd tmm6, [{w} + {sb} * 1]",
             concat!("tdpbf16ps tmm", $acc, ", tmm4, tmm6"),
             w = in(reg) $b, sb = in(reg) 64usize, options(nostack, readonly));
        if $two {
            asm!("tileloadd tmm7, [{w} + {sb} * 1 + 1024]",
                 concat!("tdpbf16ps tmm", $acc, ", tmm5, tmm7"),
                 w = in(reg) $b, sb = in(reg) 64usize, options(nostack, readonly));
        }
        asm!(concat!("tilestored [{o} + {s} * 1], tmm", $acc),
             o = in(reg) $out, s = in(reg) $stride, options(nostack));
    }};
}

/// The scores of 16 queries `a` (bf16, `a_stride` bytes between rows, `ksteps` of 1 or
/// 2 steps of 32 dimensions) with `key_tiles` tiles of 16 keys `b` (each key tile's
/// `ksteps` tiles in a row, 1024 bytes each), into `out`: f32, key tile `j` at `64j`
/// bytes, rows `out_stride` bytes apart. tmm0-3 take the key tiles in turn, so that each
/// store overlaps the next products; tmm4-5 hold the queries, tmm6-7 the keys.
///
/// # Safety
/// As [`bf16_columns`].
pub(crate) unsafe fn bf16_scores(
    a: *const u8,
    a_stride: usize,
    b: *const u8,
    ksteps: usize,
    key_tiles: usize,
    out: *mut u8,
    out_stride: usize,
) {
    debug_assert!(ksteps == 1 || ksteps == 2);
    let two = ksteps == 2;
    // SAFETY: the caller's contract.
    unsafe {
        configure();
        asm!("tileloadd tmm4, [{a} + {sa} * 1]",
             a = in(reg) a, sa = in(reg) a_stride, options(nostack, readonly));
        if two {
            asm!("tileloadd tmm5, [{a} + {sa} * 1 + 64]",
                 a = in(reg) a, sa = in(reg) a_stride, options(nostack, readonly));
        }
        for j in 0..key_tiles {
            let w = b.add(j * ksteps * TILE_BYTES);
            let o = out.add(64 * j);
            match j % 4 {
                0 => scores_tile!("0", w, two, o, out_stride),
                1 => scores_tile!("1", w, two, o, out_stride),
                2 => scores_tile!("2", w, two, o, out_stride),
                _ => scores_tile!("3", w, two, o, out_stride),
            }
        }
    }
}
