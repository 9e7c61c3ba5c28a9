//! GIF's first frame as Pillow 13 opens it (`Image.open` then `load()`), which is what
//! transformers' `convert_to_rgb` receives.
//!
//! Our own parser and LZW decoder, because Pillow differs from the `image` crate (and from
//! the GIF spec) in ways that change pixels or decide whether a file opens at all:
//! - the image is the logical screen enlarged to hold the first frame, filled around the
//!   frame with index 0 (the background colour is ignored) or with the transparent index;
//! - a colour table that is the identity gray ramp counts as no table, and without a table
//!   the image is gray (mode `L`, value = index); indices past the table are black;
//! - the LZW stream is read the way Pillow's C decoder reads it: decoding stops at the last
//!   pixel; an end code, or a sub-block cut short, asks for more data, which Pillow reads
//!   in chunks of 64 KiB, so when none is left the file is refused as truncated;
//! - the header walk skips stray bytes and reads extensions exactly as far as Pillow does.
//!
//! A GCE transparent index gives RGBA (or gray+alpha) with alpha 0 on that index, so that
//! `convert_to_rgb` composites it on white as transformers does. Pillow's GIF reader sees no
//! EXIF or XMP orientation, so none is applied.

use image::{DynamicImage, GrayAlphaImage, GrayImage, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage};

use super::Failure;

/// Pillow's `ImageFile.MAXBLOCK`: `load()` hands the decoder the file in chunks this size.
const CHUNK: usize = 65536;
/// LZW codes are at most 12 bits: the table holds 4096 entries.
const TABLE: usize = 4096;

fn bad(message: &str) -> Failure {
    Failure::Bad(message.to_string())
}

/// The first frame of `data` as Pillow's RGB, RGBA (transparency), L or LA image.
pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<DynamicImage, Failure> {
    let mut r = Reader { data, pos: 0 };
    let header = r.take(13);
    if header.len() < 13 {
        return Err(bad("truncated header"));
    }
    let (screen_w, screen_h) = (u16_at(header, 6), u16_at(header, 8));
    let global = if header[10] & 0x80 != 0 {
        colour_table(r.take(3 << ((header[10] & 7) + 1)))
    } else {
        None
    };
    let frame = first_frame(&mut r)?;
    // An identity local table leaves Pillow's image mode `L` but carrying the global
    // palette, which colours it (once `exif_transpose` has copied it, as mode `P`).
    let palette = frame.local.as_deref().or(global.as_deref());
    // Pillow grows the image to hold a frame that reaches past the screen.
    let width = screen_w.max(frame.left + frame.width);
    let height = screen_h.max(frame.top + frame.height);
    Failure::check_size(width, height, max_pixels)?;
    if frame.width == 0 || frame.height == 0 {
        return Err(bad("tile cannot extend outside image"));
    }
    if frame.min_code_size > 12 {
        return Err(bad("codec configuration error (LZW code size over 12)"));
    }
    let mut indices = vec![frame.transparency.unwrap_or(0); width as usize * height as usize];
    let mut canvas = Canvas {
        pixels: &mut indices,
        stride: width as usize,
        left: frame.left as usize,
        top: frame.top as usize,
        width: frame.width as usize,
        height: frame.height as usize,
        x: 0,
        y: 0,
        step: if frame.interlaced { 8 } else { 1 },
        passes_left: if frame.interlaced { 3 } else { 0 },
    };
    let mut codes = Codes {
        data,
        pos: frame.data_start,
        available: data.len().min(frame.data_start.saturating_add(CHUNK)),
        block_left: 0,
        bits: 0,
        count: 0,
    };
    decompress(&mut codes, frame.min_code_size, &mut canvas)?;
    Ok(render(width, height, &indices, palette, frame.transparency))
}

fn u16_at(bytes: &[u8], at: usize) -> u32 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]]) as u32
}

/// A colour table, or `None` where every entry `i` is `(i, i, i)`: Pillow then treats the
/// image as having no table.
fn colour_table(raw: &[u8]) -> Option<Vec<u8>> {
    let identity = raw
        .chunks(3)
        .enumerate()
        .all(|(i, rgb)| rgb.iter().all(|&v| v as usize == i));
    (!identity).then(|| raw.to_vec())
}

/// The image `convert_to_rgb` must see: palette colours (black past the table) or, without
/// a table, gray levels equal to the indices; alpha 0 on the transparent index.
fn render(
    width: u32,
    height: u32,
    indices: &[u8],
    palette: Option<&[u8]>,
    t: Option<u8>,
) -> DynamicImage {
    let at = |x: u32, y: u32| indices[y as usize * width as usize + x as usize];
    let alpha = |i: u8| if Some(i) == t { 0 } else { 255 };
    let colour = |i: u8| {
        let k = i as usize * 3;
        palette
            .and_then(|p| p.get(k..k + 3))
            .map_or([0; 3], |c| [c[0], c[1], c[2]])
    };
    match (palette, t) {
        (Some(_), None) => RgbImage::from_fn(width, height, |x, y| Rgb(colour(at(x, y)))).into(),
        (Some(_), Some(_)) => RgbaImage::from_fn(width, height, |x, y| {
            let i = at(x, y);
            let [r, g, b] = colour(i);
            Rgba([r, g, b, alpha(i)])
        })
        .into(),
        (None, None) => GrayImage::from_fn(width, height, |x, y| Luma([at(x, y)])).into(),
        (None, Some(_)) => {
            GrayAlphaImage::from_fn(width, height, |x, y| LumaA([at(x, y), alpha(at(x, y))])).into()
        }
    }
}

/// What Pillow's header walk keeps of the first frame.
struct Frame {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    interlaced: bool,
    /// `None` also for a local table that is the identity ramp.
    local: Option<Vec<u8>>,
    transparency: Option<u8>,
    min_code_size: u8,
    data_start: usize,
}

/// Walks blocks up to the first image descriptor as GifImagePlugin does, including where
/// it reads one sub-block more than the spec would (it then skips on from there).
fn first_frame(r: &mut Reader) -> Result<Frame, Failure> {
    let mut transparency = None;
    loop {
        match r.byte() {
            None | Some(b';') => return Err(bad("image not found in GIF frame")),
            Some(b'!') => {
                let label = r.byte().ok_or_else(|| bad("truncated extension"))?;
                let first = r.sub_block();
                match (label, first) {
                    (0xF9, Some(block)) => {
                        if block.len() < 3 || (block[0] & 1 != 0 && block.len() < 4) {
                            return Err(bad("short graphic control extension"));
                        }
                        if block[0] & 1 != 0 {
                            transparency = Some(block[3]);
                        }
                    }
                    // A comment ends at its first empty sub-block, even its very first one.
                    (0xFE, None) => continue,
                    (0xFE, Some(_)) => {
                        while r.sub_block().is_some_and(|b| !b.is_empty()) {}
                        continue;
                    }
                    (0xFF, Some(block)) if block.starts_with(b"NETSCAPE2.0") => {
                        r.sub_block();
                    }
                    _ => {}
                }
                // Also after a first sub-block that was the terminator: Pillow skips on.
                while r.sub_block().is_some_and(|b| !b.is_empty()) {}
            }
            Some(b',') => {
                let d = r.take(9);
                if d.len() < 9 {
                    return Err(bad("truncated image descriptor"));
                }
                let flags = d[8];
                let local = match flags & 0x80 {
                    0 => None,
                    _ => colour_table(r.take(3 << ((flags & 7) + 1))),
                };
                // A table cut short leaves nothing for this byte either.
                let min_code_size = r.byte().ok_or_else(|| bad("truncated image descriptor"))?;
                return Ok(Frame {
                    left: u16_at(d, 0),
                    top: u16_at(d, 2),
                    width: u16_at(d, 4),
                    height: u16_at(d, 6),
                    interlaced: flags & 0x40 != 0,
                    local,
                    transparency,
                    min_code_size,
                    data_start: r.pos,
                });
            }
            // Pillow steps over any other byte between blocks.
            Some(_) => {}
        }
    }
}

/// The file from a position, read as Pillow's file object reads it: short at the end.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.data.len().min(self.pos + n);
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        bytes
    }

    /// One sub-block, `None` for the terminator or at the end of the file.
    fn sub_block(&mut self) -> Option<&'a [u8]> {
        match self.byte()? {
            0 => None,
            n => Some(self.take(n as usize)),
        }
    }
}

/// LZW codes from the sub-blocks after the image descriptor. `available` is how much of the
/// file Pillow has read so far: it decodes a sub-block only once all of it is there.
struct Codes<'a> {
    data: &'a [u8],
    pos: usize,
    available: usize,
    block_left: usize,
    bits: u32,
    count: u32,
}

impl Codes<'_> {
    fn next(&mut self, size: u32) -> Result<u32, Failure> {
        while self.count < size {
            if self.block_left > 0 {
                self.bits |= (self.data[self.pos] as u32) << self.count;
                self.count += 8;
                self.pos += 1;
                self.block_left -= 1;
                continue;
            }
            match self.data.get(self.pos) {
                Some(&n) if self.pos + 1 + n as usize <= self.available => {
                    self.block_left = n as usize;
                    self.pos += 1;
                }
                _ => self.read_more()?,
            }
        }
        let code = self.bits & ((1 << size) - 1);
        self.bits >>= size;
        self.count -= size;
        Ok(code)
    }

    /// The decoder has returned to Pillow's `load()`, which reads the next chunk and calls
    /// it again, or refuses the file when nothing is left to read.
    fn read_more(&mut self) -> Result<(), Failure> {
        if self.available >= self.data.len() {
            return Err(bad("image file is truncated"));
        }
        self.available = self.data.len().min(self.available + CHUNK);
        Ok(())
    }
}

/// Where the next pixel of the frame goes, in GIF row order (interlaced: rows 0, 8, 16...,
/// then 4, 12..., then 2, 6..., then 1, 3...).
struct Canvas<'a> {
    pixels: &'a mut [u8],
    stride: usize,
    left: usize,
    top: usize,
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    step: usize,
    passes_left: u8,
}

impl Canvas<'_> {
    /// Writes one pixel; `false` once the frame is full, which is where Pillow stops.
    fn put(&mut self, v: u8) -> bool {
        self.pixels[(self.top + self.y) * self.stride + self.left + self.x] = v;
        self.x += 1;
        if self.x < self.width {
            return true;
        }
        self.x = 0;
        self.y += self.step;
        while self.y >= self.height {
            (self.y, self.step) = match self.passes_left {
                3 => (4, 8),
                2 => (2, 4),
                1 => (1, 2),
                _ => return false,
            };
            self.passes_left -= 1;
        }
        true
    }
}

/// Pillow's LZW decoding, errors included: a first code past the clear code or a code past
/// the next free entry is a broken stream, and an end code is no end (see `read_more`).
fn decompress(codes: &mut Codes, min_size: u8, canvas: &mut Canvas) -> Result<(), Failure> {
    let broken = || bad("broken data stream when reading image file");
    let clear = 1u32 << min_size;
    let end = clear + 1;
    let mut prefix = vec![0u32; TABLE];
    let mut suffix = vec![0u8; TABLE];
    let mut string = Vec::with_capacity(TABLE);
    let (mut next, mut size) = (clear + 2, min_size as u32 + 1);
    // `None` right after a clear code; else the previous code and its first byte.
    let mut previous: Option<(u32, u8)> = None;
    loop {
        let code = codes.next(size)?;
        if code == clear {
            (next, size, previous) = (clear + 2, min_size as u32 + 1, None);
            continue;
        }
        if code == end {
            codes.read_more()?;
            continue;
        }
        let Some((last_code, last_first)) = previous else {
            if code > clear {
                return Err(broken());
            }
            // Literals of wide code sizes keep their low byte, as Pillow stores them.
            previous = Some((code, code as u8));
            if !canvas.put(code as u8) {
                return Ok(());
            }
            continue;
        };
        if code > next {
            return Err(broken());
        }
        // The string of `code`, last byte first; `code == next` is the previous string
        // plus its own first byte.
        string.clear();
        let mut c = code;
        if code == next {
            string.push(last_first);
            c = last_code;
        }
        while c >= clear {
            if c as usize >= TABLE || string.len() >= TABLE {
                return Err(broken());
            }
            string.push(suffix[c as usize]);
            c = prefix[c as usize];
        }
        let first = c as u8;
        if (next as usize) < TABLE {
            suffix[next as usize] = first;
            prefix[next as usize] = last_code;
            if next == (1 << size) - 1 && size < 12 {
                size += 1;
            }
            next += 1;
        }
        previous = Some((code, first));
        if !canvas.put(first) || !string.iter().rev().all(|&v| canvas.put(v)) {
            return Ok(());
        }
    }
}
