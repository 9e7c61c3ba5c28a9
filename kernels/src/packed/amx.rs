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
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    for t in 0..7 {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = TILE_ROWS as u8;
    }
    // SAFETY: the caller's contract; every tile is 16 rows of 64 bytes, read and
    // written with the strides that lay them out.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            options(nostack, nomem)
        );
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
