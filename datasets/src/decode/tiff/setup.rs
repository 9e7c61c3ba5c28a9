//! Pillow's `TiffImageFile._setup`: from the tags of the first directory, the mode the
//! image opens as, the raw mode its samples are unpacked with, and where they come
//! from: Pillow's own raw decoder for uncompressed files (a list of tiles, each read
//! from its offset), libtiff for everything else. The mode table is Pillow's
//! `OPEN_INFO`; a combination missing from it is refused, as Pillow refuses it.

use super::ifd::{Ifd, Num, Value};
use super::unpack::Mode;

const COMPRESSION: u16 = 259;
const PHOTOMETRIC: u16 = 262;
const FILL_ORDER: u16 = 266;
const STRIP_OFFSETS: u16 = 273;
const ORIENTATION: u16 = 274;
const SAMPLES_PER_PIXEL: u16 = 277;
const ROWS_PER_STRIP: u16 = 278;
const PLANAR_CONFIGURATION: u16 = 284;
const COLORMAP: u16 = 320;
const TILE_WIDTH: u16 = 322;
const TILE_LENGTH: u16 = 323;
const TILE_OFFSETS: u16 = 324;
const EXTRA_SAMPLES: u16 = 338;
const SAMPLE_FORMAT: u16 = 339;
const XMP: u16 = 700;

/// How the image is to be decoded.
pub(super) struct Plan {
    pub mode: Mode,
    pub width: u32,
    pub height: u32,
    pub source: Source,
    /// The Orientation tag, when it holds a number.
    pub orientation: Option<Num>,
    /// Whether the Orientation tag is there at all (a non-number still hides XMP's).
    pub has_orientation: bool,
    pub xmp: Option<Vec<u8>>,
    /// For `P`/`PA`: the ColorMap's 16-bit values divided by 256, all reds, then all
    /// greens, then all blues.
    pub palette: Option<Vec<u8>>,
}

pub(super) enum Source {
    /// Uncompressed: Pillow's raw decoder, tile by tile.
    Raw(Vec<Tile>),
    /// Compressed: libtiff decodes, Pillow unpacks its output with `rawmode`.
    Libtiff {
        rawmode: &'static str,
        ifd_offset: u64,
    },
}

/// One of Pillow's raw tiles: the rectangle it fills, the file offset its rows start at,
/// the raw mode and the row stride in the file (0: the rectangle's own row size).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tile {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    pub offset: i128,
    pub rawmode: String,
    pub stride: i128,
}

/// Pillow's reading of the tags, `Err` with the reason where Pillow's open refuses.
pub(super) fn plan(ifd: &Ifd) -> Result<Plan, String> {
    if ifd.contains(0xBC01) {
        return Err("Windows Media Photo files are not supported".into());
    }
    let compression = scalar(ifd, COMPRESSION, 1)?;
    // Pillow's COMPRESSION_INFO: anything else is refused at open.
    if ![
        1, 2, 3, 4, 5, 6, 7, 8, 32771, 32773, 32809, 32946, 34676, 34677, 34925, 50000, 50001,
    ]
    .contains(&compression)
    {
        return Err(format!("unknown compression {compression}"));
    }
    // Pillow only ever compares it with 1 and 2: anything else (even a string) is
    // neither.
    let planar = scalar(ifd, PLANAR_CONFIGURATION, 1).unwrap_or(0);
    // Old-style JPEG is taken to be YCbCr whatever the tag says. A Photometric tag of
    // several values is dropped by Pillow (read as absent, 0), unlike other one-value
    // tags, which keep their first value.
    let photo = match ifd.get(PHOTOMETRIC) {
        _ if compression == 6 => 6,
        Some(Value::Nums(v)) if v.len() > 1 => 0,
        _ => scalar(ifd, PHOTOMETRIC, 0)?,
    };
    let fill_order = scalar(ifd, FILL_ORDER, 1)?;
    let dimension = |tag| -> Result<i128, String> {
        match ifd.get(tag) {
            None => Err("missing dimensions".to_string()),
            Some(Value::Nums(v)) => v
                .first()
                .and_then(|n| n.int())
                .ok_or("invalid dimensions".into()),
            Some(_) => Err("invalid dimensions".into()),
        }
    };
    let (width, height) = (dimension(256)?, dimension(257)?);
    let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(format!("invalid dimensions {width}x{height}"));
    };
    if width == 0 || height == 0 {
        return Err(format!("empty image ({width}x{height})"));
    }

    let mut sample_format = tuple(ifd, SAMPLE_FORMAT, &[1])?;
    if sample_format.len() > 1 && sample_format.iter().all(|&s| s == sample_format[0]) {
        sample_format.truncate(1);
    }
    let mut bits = tuple(ifd, 258, &[1])?;
    let mut extra = tuple(ifd, EXTRA_SAMPLES, &[])?;
    let default_samples = if compression == 6 && (photo == 2 || photo == 6) {
        3
    } else {
        1
    };
    let mut samples = scalar(ifd, SAMPLES_PER_PIXEL, default_samples)?;
    let mut bands = match photo {
        2 | 6 | 8 => 3,
        5 => 4,
        _ => 1,
    };
    if planar == 2 && !extra.is_empty() && extra.iter().all(|&e| e <= 0) && extra.contains(&0) {
        // Unspecified extra samples in planes of their own are dropped.
        bits.truncate(bits.len().saturating_sub(extra.len()));
        samples -= extra.len() as i128;
        extra.clear();
    }
    bands += extra.len();
    if samples > 6 {
        return Err(format!(
            "{samples} samples per pixel is more than Pillow decodes"
        ));
    }
    if samples < 1 {
        return Err("unknown data organization".into());
    }
    if (samples as usize) < bits.len() {
        bits.truncate(samples as usize);
    } else if samples as usize > bits.len() && bits.len() == 1 {
        bits = vec![bits[0]; samples as usize];
    }
    if bits.len() != samples as usize {
        return Err("unknown data organization".into());
    }
    let big_endian = ifd.big_endian;
    let key = |fill_order| Key {
        big_endian,
        photo,
        sample_format: &sample_format,
        fill_order,
        bits: &bits,
        extra: &extra,
    };
    let (mut mode, mut rawmode) = open_info(&key(fill_order)).ok_or_else(|| {
        format!(
            "unknown pixel mode (photometric {photo}, sample format {sample_format:?}, \
             {bits:?} bits, extra samples {extra:?})"
        )
    })?;

    if compression == 50001 {
        // Pillow's libtiff is built without WebP (the system one may have it).
        return Err("WebP-in-TIFF: Pillow's libtiff has no WebP codec".into());
    }
    let source = if compression != 1 {
        // libtiff undoes the fill order itself, and hands back native-endian samples.
        if fill_order == 2 {
            (mode, rawmode) = open_info(&key(1)).ok_or("unknown pixel mode")?;
        }
        if photo == 6 {
            mode = Mode::Rgb;
            rawmode = if compression == 7 && planar == 1 {
                "RGB"
            } else {
                "RGBX"
            };
        } else {
            rawmode = native(rawmode);
        }
        Source::Libtiff {
            rawmode,
            ifd_offset: ifd.offset,
        }
    } else {
        Source::Raw(raw_tiles(
            ifd, width, height, planar, &bits, bands, rawmode,
        )?)
    };

    let palette = if matches!(mode, Mode::P | Mode::PA) {
        Some(palette(ifd)?)
    } else {
        None
    };
    let orientation = match ifd.get(ORIENTATION) {
        Some(Value::Nums(v)) => v.first().copied(),
        _ => None,
    };
    let xmp = match ifd.get(XMP) {
        Some(Value::Bytes(b)) => Some(b.clone()),
        _ => None,
    };
    Ok(Plan {
        mode,
        width,
        height,
        source,
        orientation,
        has_orientation: ifd.contains(ORIENTATION),
        xmp,
        palette,
    })
}

/// A one-value tag as an integer (its first value, as Pillow keeps it), or `default`
/// when absent. Values equal to no integer are refused: they would match nothing in
/// Pillow's tables.
fn scalar(ifd: &Ifd, tag: u16, default: i128) -> Result<i128, String> {
    match ifd.get(tag) {
        None => Ok(default),
        Some(Value::Nums(v)) => v
            .first()
            .and_then(|n| n.integral())
            .ok_or_else(|| format!("tag {tag} is not an integer")),
        Some(_) => Err(format!("tag {tag} is not a number")),
    }
}

/// A many-value tag as integers, or `default` when absent.
fn tuple(ifd: &Ifd, tag: u16, default: &[i128]) -> Result<Vec<i128>, String> {
    match ifd.get(tag) {
        None => Ok(default.to_vec()),
        Some(Value::Nums(v)) => v
            .iter()
            .map(|n| n.integral())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("tag {tag} is not integers")),
        Some(_) => Err(format!("tag {tag} is not numbers")),
    }
}

/// Pillow's rewrite of a raw mode for libtiff's native-endian output: `I;16` and the
/// modes ending in `;16B`/`;16L` become `;16N`. (`I;16BS`, `I;32BS` and `F;32BF` keep
/// their byte order, so Pillow reads compressed big-endian files of those byte-swapped.)
fn native(rawmode: &'static str) -> &'static str {
    match rawmode {
        "I;16" | "I;16B" => "I;16N",
        "RGB;16L" | "RGB;16B" => "RGB;16N",
        "RGBA;16L" | "RGBA;16B" => "RGBA;16N",
        "RGBX;16L" | "RGBX;16B" => "RGBX;16N",
        "RGBa;16L" | "RGBa;16B" => "RGBa;16N",
        "CMYK;16L" | "CMYK;16B" => "CMYK;16N",
        other => other,
    }
}

/// The ColorMap as Pillow turns it into a palette: each value divided by 256 (values
/// that do not then fit a byte, or more than 256 colours, fail its load).
fn palette(ifd: &Ifd) -> Result<Vec<u8>, String> {
    let Some(Value::Nums(map)) = ifd.get(COLORMAP) else {
        return Err("a palette image without a usable ColorMap".into());
    };
    let bytes = map
        .iter()
        .map(|n| {
            let v = n.int()?;
            u8::try_from(v.div_euclid(256)).ok()
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or("ColorMap values out of range")?;
    if bytes.len() / 3 > 256 {
        return Err("invalid palette size".into());
    }
    Ok(bytes)
}

/// Pillow's tile list for its raw decoder, in the order it decodes them: sorted by
/// file offset, and of consecutive tiles differing only in offset the last kept.
fn raw_tiles(
    ifd: &Ifd,
    width: u32,
    height: u32,
    planar: i128,
    bits: &[i128],
    bands: usize,
    rawmode: &str,
) -> Result<Vec<Tile>, String> {
    let tile_side = |tag| match ifd.get(tag) {
        Some(Value::Nums(v)) => v
            .first()
            .and_then(|n| n.int())
            .ok_or("invalid tile dimensions"),
        _ => Err("invalid tile dimensions"),
    };
    let (offsets, w, h) = if let Some(v) = ifd.get(STRIP_OFFSETS) {
        let h = match ifd.get(ROWS_PER_STRIP) {
            None => height as i128,
            Some(Value::Nums(n)) => n
                .first()
                .and_then(|n| n.int())
                .ok_or("invalid RowsPerStrip")?,
            Some(_) => return Err("invalid RowsPerStrip".into()),
        };
        (v, width as i128, h)
    } else if let Some(v) = ifd.get(TILE_OFFSETS) {
        (v, tile_side(TILE_WIDTH)?, tile_side(TILE_LENGTH)?)
    } else {
        return Err("unknown data organization (no strip or tile offsets)".into());
    };
    // Empty tiles make Pillow fail at load (or, zero wide, read the whole image from
    // one offset): refused here.
    if w <= 0 || h <= 0 {
        return Err(format!("empty tiles ({w}x{h})"));
    }
    let Value::Nums(all) = offsets else {
        return Err("invalid offsets".into());
    };
    let all: Vec<i128> = all
        .iter()
        .map(|n| n.int())
        .collect::<Option<_>>()
        .ok_or("invalid offsets")?;
    let mut list = &all[..];
    if w == width as i128 && h == height as i128 && planar != 2 {
        // One tile covers the image: Pillow reads the last offset only.
        list = &all[all.len().saturating_sub(1)..];
    }
    let bits_per_pixel: i128 = bits.iter().sum();
    let (width, height) = (width as i128, height as i128);
    let (mut x, mut y, mut layer) = (0i128, 0i128, 0usize);
    let mut tiles = Vec::with_capacity(list.len());
    for &offset in list {
        let mut stride = if x + w > width {
            (w * bits_per_pixel) as f64 / 8.0
        } else {
            0.0
        };
        let mut tile_rawmode = rawmode.to_string();
        if planar == 2 {
            // Each plane is decoded with one character of the raw mode ("RGB;16L" gives
            // "R", "G", "B": Pillow reads 16-bit planes as 8-bit samples).
            let Some(c) = rawmode.chars().nth(layer) else {
                return Err("more planes than the mode has bands".into());
            };
            tile_rawmode = c.to_string();
            stride /= bands as f64;
        }
        tiles.push(Tile {
            x0: x as u32,
            y0: y as u32,
            x1: (x + w).min(width) as u32,
            y1: (y + h).min(height) as u32,
            offset,
            rawmode: tile_rawmode,
            stride: stride as i128,
        });
        x += w;
        if x >= width {
            x = 0;
            y += h;
            if y >= height {
                y = 0;
                layer += 1;
            }
        }
    }
    tiles.sort_by_key(|t| t.offset);
    let mut kept: Vec<Tile> = Vec::with_capacity(tiles.len());
    for t in tiles {
        match kept.last_mut() {
            Some(last)
                if (
                    last.x0,
                    last.y0,
                    last.x1,
                    last.y1,
                    &last.rawmode,
                    last.stride,
                ) == (t.x0, t.y0, t.x1, t.y1, &t.rawmode, t.stride) =>
            {
                *last = t
            }
            _ => kept.push(t),
        }
    }
    Ok(kept)
}

/// The key of Pillow's `OPEN_INFO`: (byte order, photometric, sample format, fill
/// order, bits per sample, extra samples).
struct Key<'a> {
    big_endian: bool,
    photo: i128,
    sample_format: &'a [i128],
    fill_order: i128,
    bits: &'a [i128],
    extra: &'a [i128],
}

/// Pillow 13's `OPEN_INFO` table: the mode and raw mode for a key, `None` for the
/// combinations it does not know.
fn open_info(k: &Key) -> Option<(Mode, &'static str)> {
    use Mode as M;
    let [format] = k.sample_format else {
        return None;
    };
    let le = !k.big_endian;
    let (fill, photo) = (k.fill_order, k.photo);
    let mut bits = [0u8; 6];
    for (b, &v) in bits.iter_mut().zip(k.bits) {
        *b = u8::try_from(v).ok()?;
    }
    let bits = &bits[..k.bits.len()];
    let extra: Vec<i16> = k
        .extra
        .iter()
        .map(|&e| i16::try_from(e).ok())
        .collect::<Option<_>>()?;
    let uniform = |n: usize, b: u8| bits.len() == n && bits.iter().all(|&v| v == b);
    Some(match (photo, format, fill, &extra[..]) {
        // Bilevel and low-bit gray: "I" in the raw mode inverts (min-is-white), "R"
        // reverses the bit order (FillOrder 2).
        (0 | 1, 1, 1 | 2, []) if bits == [1] || bits == [2] || bits == [4] => {
            let raws: [&'static str; 4] = match bits[0] {
                1 => ["1;I", "1;IR", "1", "1;R"],
                2 => ["L;2I", "L;2IR", "L;2", "L;2R"],
                _ => ["L;4I", "L;4IR", "L;4", "L;4R"],
            };
            let raw = raws[(photo as usize) * 2 + (fill as usize - 1)];
            (if bits[0] == 1 { M::One } else { M::L }, raw)
        }
        (0, 1, 1, []) if bits == [8] => (M::L, "L;I"),
        (0, 1, 2, []) if bits == [8] => (M::L, "L;IR"),
        (1, 1 | 2, 1, []) if bits == [8] => (M::L, "L"),
        (1, 1, 2, []) if bits == [8] => (M::L, "L;R"),
        (1, 1, 1, []) if bits == [12] && le => (M::I16, "I;12"),
        (0, 1, 1, []) if bits == [16] && le => (M::I16, "I;16"),
        (1, 1, 1, []) if bits == [16] => {
            if le {
                (M::I16, "I;16")
            } else {
                (M::I16B, "I;16B")
            }
        }
        (1, 1, 2, []) if bits == [16] && le => (M::I16, "I;16R"),
        (1, 2, 1, []) if bits == [16] => (M::I, if le { "I;16S" } else { "I;16BS" }),
        (0 | 1, 3, 1, []) if bits == [32] => (M::F, if le { "F;32F" } else { "F;32BF" }),
        (1, 1, 1, []) if bits == [32] && le => (M::I, "I;32N"),
        (1, 2, 1, []) if bits == [32] => (M::I, if le { "I;32S" } else { "I;32BS" }),
        (1, 1, 1, [0]) if uniform(2, 8) => (M::L, "LX"),
        (1, 1, 1, [1]) if uniform(2, 8) => (M::La, "La"),
        (1, 1, 1, [2]) if uniform(2, 8) => (M::LA, "LA"),
        (2, 1, 1, []) if uniform(3, 8) => (M::Rgb, "RGB"),
        (2, 1, 2, []) if uniform(3, 8) => (M::Rgb, "RGB;R"),
        (2, 1, 1, []) if uniform(4, 8) => (M::Rgba, "RGBA"),
        (2, 1, 1, [0]) if uniform(4, 8) => (M::Rgb, "RGBX"),
        (2, 1, 1, [0, 0]) if uniform(5, 8) => (M::Rgb, "RGBXX"),
        (2, 1, 1, [0, 0, 0]) if uniform(6, 8) => (M::Rgb, "RGBXXX"),
        (2, 1, 1, [1]) if uniform(4, 8) => (M::Rgba, "RGBa"),
        (2, 1, 1, [1, 0]) if uniform(5, 8) => (M::Rgba, "RGBaX"),
        (2, 1, 1, [1, 0, 0]) if uniform(6, 8) => (M::Rgba, "RGBaXX"),
        (2, 1, 1, [2] | [999]) if uniform(4, 8) => (M::Rgba, "RGBA"),
        (2, 1, 1, [2, 0]) if uniform(5, 8) => (M::Rgba, "RGBAX"),
        (2, 1, 1, [2, 0, 0]) if uniform(6, 8) => (M::Rgba, "RGBAXX"),
        (2, 1, 1, []) if uniform(3, 16) => (M::Rgb, if le { "RGB;16L" } else { "RGB;16B" }),
        (2, 1, 1, [] | [2]) if uniform(4, 16) => {
            (M::Rgba, if le { "RGBA;16L" } else { "RGBA;16B" })
        }
        (2, 1, 1, [0]) if uniform(4, 16) => (M::Rgb, if le { "RGBX;16L" } else { "RGBX;16B" }),
        (2, 1, 1, [1]) if uniform(4, 16) => (M::Rgba, if le { "RGBa;16L" } else { "RGBa;16B" }),
        (3, 1, 1, []) if bits == [1] => (M::P, "P;1"),
        (3, 1, 2, []) if bits == [1] => (M::P, "P;1R"),
        (3, 1, 1, []) if bits == [2] => (M::P, "P;2"),
        (3, 1, 2, []) if bits == [2] => (M::P, "P;2R"),
        (3, 1, 1, []) if bits == [4] => (M::P, "P;4"),
        (3, 1, 2, []) if bits == [4] => (M::P, "P;4R"),
        (3, 1, 1, []) if bits == [8] => (M::P, "P"),
        (3, 1, 2, []) if bits == [8] => (M::P, "P;R"),
        (3, 1, 1, [0]) if uniform(2, 8) => (M::P, "PX"),
        (3, 1, 1, [2]) if uniform(2, 8) => (M::PA, "PA"),
        (5, 1, 1, []) if uniform(4, 8) => (M::Cmyk, "CMYK"),
        (5, 1, 1, [0]) if uniform(5, 8) => (M::Cmyk, "CMYKX"),
        (5, 1, 1, [0, 0]) if uniform(6, 8) => (M::Cmyk, "CMYKXX"),
        (5, 1, 1, []) if uniform(4, 16) => (M::Cmyk, if le { "CMYK;16L" } else { "CMYK;16B" }),
        (6, 1, 1, []) if bits == [8] => (M::L, "L"),
        (6, 1, 1, []) if uniform(3, 8) => (M::YCbCr, "YCbCr"),
        (8, 1, 1, []) if uniform(3, 8) => (M::Lab, "LAB"),
        _ => return None,
    })
}
