//! Pillow's image modes and the "raw mode" unpackers (libImaging/Unpack.c) that turn a
//! row of TIFF samples into a row of one mode. The pixels are kept in Pillow's own
//! layout (one byte for `1`/`L`/`P`, two for `I;16`, four for everything else, alpha
//! of `LA`/`PA` in the fourth byte) because Pillow's quirks live in that layout: planar
//! files write one byte of four per plane, 16-bit colour keeps the high byte, and so on.

/// The Pillow modes a TIFF can open as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    One,
    L,
    La,
    LA,
    P,
    PA,
    I16,
    I16B,
    I,
    F,
    Rgb,
    Rgba,
    Cmyk,
    YCbCr,
    Lab,
}

impl Mode {
    pub fn pixel_size(self) -> usize {
        match self {
            Mode::One | Mode::L | Mode::P => 1,
            Mode::I16 | Mode::I16B => 2,
            _ => 4,
        }
    }

    /// How many bands Pillow's `im->bands` counts (libtiff reads that many planes).
    pub fn bands(self) -> usize {
        match self {
            Mode::One | Mode::L | Mode::P | Mode::I16 | Mode::I16B | Mode::I | Mode::F => 1,
            Mode::La | Mode::LA | Mode::PA => 2,
            Mode::Rgb | Mode::YCbCr | Mode::Lab => 3,
            Mode::Rgba | Mode::Cmyk => 4,
        }
    }
}

/// An image in Pillow's memory layout, rows top to bottom.
pub(super) struct Canvas {
    pub mode: Mode,
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Canvas {
    /// A zeroed canvas; the caller has checked the size against the pixel budget.
    pub fn new(mode: Mode, width: usize, height: usize) -> Canvas {
        Canvas {
            mode,
            width,
            height,
            data: vec![0; width * height * mode.pixel_size()],
        }
    }

    /// Unpacks one row of `pixels` pixels from `input` into the canvas at `(x, y)`.
    pub fn unpack_row(
        &mut self,
        unpacker: &Unpacker,
        (x, y): (usize, usize),
        input: &[u8],
        pixels: usize,
    ) -> Result<(), &'static str> {
        // Pillow's words where a block reaches past the image.
        let out = self
            .span(x, y, pixels)
            .ok_or("tile cannot extend outside image")?;
        unpacker
            .unpack(out, input, pixels)
            .ok_or("a row shorter than its pixels")
    }

    /// `pixels` pixels of row `y` from column `x`, or `None` past the edge.
    pub fn span(&mut self, x: usize, y: usize, pixels: usize) -> Option<&mut [u8]> {
        if y >= self.height || x.checked_add(pixels)? > self.width {
            return None;
        }
        let size = self.mode.pixel_size();
        let start = (y * self.width + x) * size;
        self.data.get_mut(start..start + pixels * size)
    }
}

/// Byte order of 16- and 32-bit samples.
#[derive(Debug, Clone, Copy)]
enum Order {
    Little,
    Big,
}

/// What libtiff hands back: samples in the machine's byte order.
const NATIVE: Order = if cfg!(target_endian = "big") {
    Order::Big
} else {
    Order::Little
};

#[derive(Debug, Clone, Copy)]
enum Op {
    /// 1-bit to 0/255; `white_zero` inverts, `lsb` reads bits least significant first.
    Bilevel {
        white_zero: bool,
        lsb: bool,
    },
    /// 2- or 4-bit gray scaled to 0..255.
    Gray {
        bits: u32,
        white_zero: bool,
        lsb: bool,
    },
    /// 1/2/4-bit palette indices (most significant bits first).
    Index {
        bits: u32,
    },
    Copy1,
    Invert1,
    BitFlip1,
    /// The first byte of each pair (`LX`, `PX`).
    FirstOfTwo,
    /// Two bytes to (v, v, v, a): `LA`, `La`, `PA`.
    GrayAlpha,
    /// Unsigned 16-bit to `I;16`; `flip` reverses the bits of each byte (`I;16R`).
    U16 {
        order: Order,
        flip: bool,
    },
    /// Packed 12-bit big-endian samples to `I;16`.
    U12,
    /// Signed 16-bit to `I`.
    I16 {
        order: Order,
    },
    /// 32-bit to `I`; unsigned values wrap as C's cast does.
    I32 {
        order: Order,
    },
    F32 {
        order: Order,
    },
    /// Three bytes to (r, g, b, 255); `flip` reverses the bits of each byte.
    Rgb {
        flip: bool,
    },
    /// Four bytes copied, `skip` more skipped.
    Copy4 {
        skip: usize,
    },
    /// Premultiplied RGBa to RGBA, `skip` bytes skipped after each pixel.
    Unpremultiply {
        skip: usize,
    },
    /// 16-bit RGB to (r, g, b, 255) keeping the byte at `high` of each sample.
    Rgb16 {
        high: usize,
    },
    /// 16-bit four-sample pixels, keeping the byte at `high` of each sample.
    Four16 {
        high: usize,
    },
    Unpremultiply16 {
        high: usize,
    },
    /// One 8-bit sample into byte `band` of the pixel (planar data).
    Band {
        band: usize,
    },
    /// One 16-bit sample into byte `band`, keeping its byte at `high`.
    Band16 {
        band: usize,
        high: usize,
    },
    /// CIELab with signed a/b to Pillow's `LAB` (128 added to a and b).
    Lab,
}

/// A raw mode's unpacker: `bits` per pixel read, and how.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unpacker {
    pub bits: usize,
    op: Op,
}

/// Pillow's `ImagingFindUnpacker(mode, rawmode)` for the raw modes TIFF uses; `None`
/// where Pillow fails with "unknown raw mode".
pub(super) fn find(mode: Mode, rawmode: &str) -> Option<Unpacker> {
    use Mode as M;
    let high = |order: Order| match order {
        Order::Little => 1,
        Order::Big => 0,
    };
    // The ";16L", ";16B" and ";16N" suffixes.
    let order = |suffix: &str| match suffix {
        "L" => Some(Order::Little),
        "B" => Some(Order::Big),
        "N" => Some(NATIVE),
        _ => None,
    };
    let (bits, op) = match (mode, rawmode) {
        (M::One, "1") => (
            1,
            Op::Bilevel {
                white_zero: false,
                lsb: false,
            },
        ),
        (M::One, "1;I") => (
            1,
            Op::Bilevel {
                white_zero: true,
                lsb: false,
            },
        ),
        (M::One, "1;R") => (
            1,
            Op::Bilevel {
                white_zero: false,
                lsb: true,
            },
        ),
        (M::One, "1;IR") => (
            1,
            Op::Bilevel {
                white_zero: true,
                lsb: true,
            },
        ),
        (M::L, _) if rawmode.starts_with("L;2") || rawmode.starts_with("L;4") => {
            let bits = if rawmode.starts_with("L;2") { 2 } else { 4 };
            let (white_zero, lsb) = match &rawmode[3..] {
                "" => (false, false),
                "I" => (true, false),
                "R" => (false, true),
                "IR" => (true, true),
                _ => return None,
            };
            (
                bits as usize,
                Op::Gray {
                    bits,
                    white_zero,
                    lsb,
                },
            )
        }
        (M::L, "L") | (M::P, "P") | (M::P, "L") => (8, Op::Copy1),
        (M::L, "L;I") => (8, Op::Invert1),
        (M::L, "L;R") | (M::P, "P;R") => (8, Op::BitFlip1),
        (M::L, "LX") | (M::P, "PX") => (16, Op::FirstOfTwo),
        (M::LA, "LA") | (M::La, "La") | (M::PA, "PA") | (M::PA, "LA") => (16, Op::GrayAlpha),
        (M::P, "P;1") => (1, Op::Index { bits: 1 }),
        (M::P, "P;2") => (2, Op::Index { bits: 2 }),
        (M::P, "P;4") => (4, Op::Index { bits: 4 }),
        (M::I16, "I;16") => (
            16,
            Op::U16 {
                order: Order::Little,
                flip: false,
            },
        ),
        (M::I16, "I;16B") | (M::I16B, "I;16B") => (
            16,
            Op::U16 {
                order: Order::Big,
                flip: false,
            },
        ),
        (M::I16, "I;16N") | (M::I16B, "I;16N") => (
            16,
            Op::U16 {
                order: NATIVE,
                flip: false,
            },
        ),
        (M::I16, "I;16R") => (
            16,
            Op::U16 {
                order: Order::Little,
                flip: true,
            },
        ),
        (M::I16, "I;12") => (12, Op::U12),
        (M::I, "I;16S") => (
            16,
            Op::I16 {
                order: Order::Little,
            },
        ),
        (M::I, "I;16BS") => (16, Op::I16 { order: Order::Big }),
        (M::I, "I;32S") => (
            32,
            Op::I32 {
                order: Order::Little,
            },
        ),
        (M::I, "I;32BS") => (32, Op::I32 { order: Order::Big }),
        (M::I, "I;32N") | (M::I, "I") => (32, Op::I32 { order: NATIVE }),
        (M::F, "F;32F") => (
            32,
            Op::F32 {
                order: Order::Little,
            },
        ),
        (M::F, "F;32BF") => (32, Op::F32 { order: Order::Big }),
        (M::F, "F") => (32, Op::F32 { order: NATIVE }),
        (M::Rgb, "RGB") | (M::YCbCr, "YCbCr") => (24, Op::Rgb { flip: false }),
        (M::Rgb, "RGB;R") => (24, Op::Rgb { flip: true }),
        (M::Rgb, "RGBX") | (M::Rgba, "RGBA") | (M::Cmyk, "CMYK") => (32, Op::Copy4 { skip: 0 }),
        (M::Rgb, "RGBXX") | (M::Rgba, "RGBAX") | (M::Cmyk, "CMYKX") => (40, Op::Copy4 { skip: 1 }),
        (M::Rgb, "RGBXXX") | (M::Rgba, "RGBAXX") | (M::Cmyk, "CMYKXX") => {
            (48, Op::Copy4 { skip: 2 })
        }
        (M::Rgba, "RGBa") => (32, Op::Unpremultiply { skip: 0 }),
        (M::Rgba, "RGBaX") => (40, Op::Unpremultiply { skip: 1 }),
        (M::Rgba, "RGBaXX") => (48, Op::Unpremultiply { skip: 2 }),
        (M::Rgb, _) if rawmode.starts_with("RGB;16") => (
            48,
            Op::Rgb16 {
                high: high(order(&rawmode[6..])?),
            },
        ),
        (M::Rgb, _) if rawmode.starts_with("RGBX;16") => (
            64,
            Op::Four16 {
                high: high(order(&rawmode[7..])?),
            },
        ),
        (M::Rgba, _) if rawmode.starts_with("RGBA;16") => (
            64,
            Op::Four16 {
                high: high(order(&rawmode[7..])?),
            },
        ),
        (M::Cmyk, _) if rawmode.starts_with("CMYK;16") => (
            64,
            Op::Four16 {
                high: high(order(&rawmode[7..])?),
            },
        ),
        (M::Rgba, _) if rawmode.starts_with("RGBa;16") => (
            64,
            Op::Unpremultiply16 {
                high: high(order(&rawmode[7..])?),
            },
        ),
        (M::Rgb | M::Rgba, "R") | (M::Cmyk, "C") | (M::Lab, "L") => (8, Op::Band { band: 0 }),
        (M::Rgb | M::Rgba, "G") | (M::Cmyk, "M") | (M::Lab, "A") => (8, Op::Band { band: 1 }),
        (M::Rgb | M::Rgba, "B") | (M::Cmyk, "Y") | (M::Lab, "B") => (8, Op::Band { band: 2 }),
        (M::Rgba, "A") | (M::Cmyk, "K") => (8, Op::Band { band: 3 }),
        (M::Lab, "LAB") => (24, Op::Lab),
        _ => return None,
    };
    Some(Unpacker { bits, op })
}

/// The unpackers libtiff's planar path uses for plane `plane` (`R`/`G`/`B`/`A`, or
/// their `;16N` forms): each plane lands in its own byte of the four-byte pixel,
/// whatever the mode.
pub(super) fn plane(plane: usize, sixteen: bool) -> Unpacker {
    if sixteen {
        let high = match NATIVE {
            Order::Little => 1,
            Order::Big => 0,
        };
        Unpacker {
            bits: 16,
            op: Op::Band16 { band: plane, high },
        }
    } else {
        Unpacker {
            bits: 8,
            op: Op::Band { band: plane },
        }
    }
}

/// Premultiplied RGBa to RGBA in place, as Pillow's `RGBa` unpacker does (libtiff's
/// planar path applies it after the planes are in).
pub(super) fn unpremultiply(pixels: &mut [u8]) {
    for p in pixels.chunks_exact_mut(4) {
        let out = unpremultiplied([p[0], p[1], p[2]], p[3]);
        p.copy_from_slice(&out);
    }
}

impl Unpacker {
    /// Bytes a row of `pixels` pixels takes.
    pub fn row_bytes(&self, pixels: usize) -> usize {
        (pixels * self.bits).div_ceil(8)
    }

    /// Unpacks `pixels` pixels from `input` into `out` (Pillow layout); `None` when
    /// either is too short.
    pub fn unpack(&self, out: &mut [u8], input: &[u8], pixels: usize) -> Option<()> {
        let input = input.get(..self.row_bytes(pixels))?;
        match self.op {
            Op::Bilevel { white_zero, lsb } => {
                let out = out.get_mut(..pixels)?;
                for (i, o) in out.iter_mut().enumerate() {
                    let byte = input[i / 8];
                    let bit = if lsb {
                        byte >> (i % 8)
                    } else {
                        byte >> (7 - i % 8)
                    } & 1;
                    *o = if (bit == 1) != white_zero { 255 } else { 0 };
                }
            }
            Op::Gray {
                bits,
                white_zero,
                lsb,
            } => {
                let per_byte = (8 / bits) as usize;
                let (mask, scale) = if bits == 2 { (3, 0x55) } else { (15, 0x11) };
                for (i, o) in out.get_mut(..pixels)?.iter_mut().enumerate() {
                    let byte = input[i / per_byte];
                    let byte = if lsb { byte.reverse_bits() } else { byte };
                    let shift = 8 - bits as usize * (i % per_byte + 1);
                    let v = ((byte >> shift) & mask) * scale;
                    *o = if white_zero { 255 - v } else { v };
                }
            }
            Op::Index { bits } => {
                let per_byte = (8 / bits) as usize;
                let mask = (1u8 << bits) - 1;
                for (i, o) in out.get_mut(..pixels)?.iter_mut().enumerate() {
                    let shift = 8 - bits as usize * (i % per_byte + 1);
                    *o = (input[i / per_byte] >> shift) & mask;
                }
            }
            Op::Copy1 => out.get_mut(..pixels)?.copy_from_slice(input),
            Op::Invert1 => {
                for (o, i) in out.get_mut(..pixels)?.iter_mut().zip(input) {
                    *o = !i;
                }
            }
            Op::BitFlip1 => {
                for (o, i) in out.get_mut(..pixels)?.iter_mut().zip(input) {
                    *o = i.reverse_bits();
                }
            }
            Op::FirstOfTwo => {
                for (o, i) in out.get_mut(..pixels)?.iter_mut().zip(input.chunks_exact(2)) {
                    *o = i[0];
                }
            }
            Op::GrayAlpha => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(2)) {
                    o.copy_from_slice(&[i[0], i[0], i[0], i[1]]);
                }
            }
            Op::U16 { order, flip } => {
                let out = out.get_mut(..pixels * 2)?;
                for (o, i) in out.chunks_exact_mut(2).zip(input.chunks_exact(2)) {
                    let mut b = [i[0], i[1]];
                    if flip {
                        b = b.map(u8::reverse_bits);
                    }
                    o.copy_from_slice(&read_u16(b, order).to_ne_bytes());
                }
            }
            Op::U12 => {
                let out = out.get_mut(..pixels * 2)?;
                for (i, o) in out.chunks_exact_mut(2).enumerate() {
                    // Two samples in three bytes, most significant bits first.
                    let at = i / 2 * 3;
                    let v = if i % 2 == 0 {
                        (input[at] as u16) << 4 | (input[at + 1] >> 4) as u16
                    } else {
                        ((input[at + 1] & 15) as u16) << 8 | input[at + 2] as u16
                    };
                    o.copy_from_slice(&v.to_ne_bytes());
                }
            }
            Op::I16 { order } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(2)) {
                    let v = read_u16([i[0], i[1]], order) as i16 as i32;
                    o.copy_from_slice(&v.to_ne_bytes());
                }
            }
            Op::I32 { order } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(4)) {
                    let v = read_u32([i[0], i[1], i[2], i[3]], order) as i32;
                    o.copy_from_slice(&v.to_ne_bytes());
                }
            }
            Op::F32 { order } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(4)) {
                    let v = f32::from_bits(read_u32([i[0], i[1], i[2], i[3]], order));
                    o.copy_from_slice(&v.to_ne_bytes());
                }
            }
            Op::Rgb { flip } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(3)) {
                    let f = |b: u8| if flip { b.reverse_bits() } else { b };
                    o.copy_from_slice(&[f(i[0]), f(i[1]), f(i[2]), 255]);
                }
            }
            Op::Copy4 { skip } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(4 + skip)) {
                    o.copy_from_slice(&i[..4]);
                }
            }
            Op::Unpremultiply { skip } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(4 + skip)) {
                    o.copy_from_slice(&unpremultiplied([i[0], i[1], i[2]], i[3]));
                }
            }
            Op::Rgb16 { high } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(6)) {
                    o.copy_from_slice(&[i[high], i[2 + high], i[4 + high], 255]);
                }
            }
            Op::Four16 { high } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(8)) {
                    o.copy_from_slice(&[i[high], i[2 + high], i[4 + high], i[6 + high]]);
                }
            }
            Op::Unpremultiply16 { high } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(8)) {
                    let rgb = [i[high], i[2 + high], i[4 + high]];
                    o.copy_from_slice(&unpremultiplied(rgb, i[6 + high]));
                }
            }
            Op::Band { band } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input) {
                    o[band] = *i;
                }
            }
            Op::Band16 { band, high } => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(2)) {
                    o[band] = i[high];
                }
            }
            Op::Lab => {
                for (o, i) in pixels_of(out, pixels)?.zip(input.chunks_exact(3)) {
                    o.copy_from_slice(&[i[0], i[1] ^ 128, i[2] ^ 128, 255]);
                }
            }
        }
        Some(())
    }
}

/// The first `pixels` four-byte pixels of `out`.
fn pixels_of(out: &mut [u8], pixels: usize) -> Option<std::slice::ChunksExactMut<'_, u8>> {
    Some(out.get_mut(..pixels * 4)?.chunks_exact_mut(4))
}

fn read_u16(b: [u8; 2], order: Order) -> u16 {
    match order {
        Order::Little => u16::from_le_bytes(b),
        Order::Big => u16::from_be_bytes(b),
    }
}

fn read_u32(b: [u8; 4], order: Order) -> u32 {
    match order {
        Order::Little => u32::from_le_bytes(b),
        Order::Big => u32::from_be_bytes(b),
    }
}

/// Pillow's `unpackRGBa`: colour times 255 over alpha, truncated and clipped; a zero
/// alpha makes the whole pixel zero.
fn unpremultiplied(rgb: [u8; 3], a: u8) -> [u8; 4] {
    match a {
        0 => [0; 4],
        255 => [rgb[0], rgb[1], rgb[2], 255],
        _ => {
            let c = |v: u8| (v as u32 * 255 / a as u32).min(255) as u8;
            [c(rgb[0]), c(rgb[1]), c(rgb[2]), a]
        }
    }
}
