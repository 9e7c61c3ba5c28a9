//! Compressed TIFFs through the system libtiff, driven as Pillow's TiffDecode.c drives
//! its bundled libtiff: the file opened from memory, YCbCr JPEG decoded to RGB by
//! libjpeg (`JPEGCOLORMODE_RGB`), other YCbCr (old-style JPEG, subsampled deflate...)
//! through libtiff's RGBA reader, everything else strip by strip or tile by tile and
//! unpacked with Pillow's raw mode. Pillow's sanity checks on strip and tile sizes are
//! kept, so the files it refuses are refused here too. libtiff's messages are silenced;
//! a failure comes back as one line.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Once;

use super::ffi::*;
use super::unpack::{self, Canvas, Mode, Unpacker};

/// The in-memory file libtiff reads, and its read position.
struct Source<'a> {
    data: &'a [u8],
    pos: u64,
}

/// A `TIFF*` from a successful TIFFClientOpen, closed when dropped.
struct Handle(*mut Tiff);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed only here.
        unsafe { TIFFClose(self.0) }
    }
}

/// A type libtiff hands some tags' values back as, and those tags.
trait TagValue: Default {
    const TAGS: &'static [u32];
}

impl TagValue for u16 {
    const TAGS: &'static [u32] = &[
        TIFFTAG_BITSPERSAMPLE,
        TIFFTAG_COMPRESSION,
        TIFFTAG_PHOTOMETRIC,
        TIFFTAG_PLANARCONFIG,
    ];
}

impl TagValue for u32 {
    const TAGS: &'static [u32] = &[
        TIFFTAG_IMAGEWIDTH,
        TIFFTAG_IMAGELENGTH,
        TIFFTAG_ROWSPERSTRIP,
        TIFFTAG_TILEWIDTH,
        TIFFTAG_TILELENGTH,
    ];
}

impl Handle {
    /// TIFFGetField, or TIFFGetFieldDefaulted when `defaulted`, of one of the tags
    /// libtiff hands back as one `T`; `None` where it has no value (or `T` is not the
    /// tag's type).
    fn get<T: TagValue>(&self, tag: u32, defaulted: bool) -> Option<T> {
        // SAFETY: for `T::TAGS` libtiff writes one `T`.
        T::TAGS
            .contains(&tag)
            .then(|| unsafe { self.field(tag, defaulted) })
            .flatten()
    }

    /// # Safety
    /// libtiff must write exactly one `T` for `tag`.
    unsafe fn field<T: Default>(&self, tag: u32, defaulted: bool) -> Option<T> {
        let mut value = T::default();
        // SAFETY: live handle; the caller vouches for the value's type.
        let ok = unsafe {
            if defaulted {
                TIFFGetFieldDefaulted(self.0, tag, &mut value as *mut T)
            } else {
                TIFFGetField(self.0, tag, &mut value as *mut T)
            }
        };
        (ok == 1).then_some(value)
    }

    /// The first ExtraSamples value (0 when the tag is absent, as libtiff defaults it).
    fn first_extra_sample(&self) -> Option<u16> {
        let (mut count, mut values) = (0u16, std::ptr::null::<u16>());
        // SAFETY: live handle; libtiff writes a uint16_t count and a pointer to that
        // many values, owned by the directory, which stays loaded while we read them.
        unsafe {
            TIFFGetFieldDefaulted(
                self.0,
                TIFFTAG_EXTRASAMPLES,
                &mut count as *mut u16,
                &mut values as *mut *const u16,
            );
            (count >= 1 && !values.is_null()).then(|| *values)
        }
    }

    fn is_tiled(&self) -> bool {
        // SAFETY: live handle.
        unsafe { TIFFIsTiled(self.0) != 0 }
    }
}

/// A started `TIFFRGBAImage`, ended when dropped.
struct RgbaReader(Box<RgbaImage>);

impl Drop for RgbaReader {
    fn drop(&mut self) {
        // SAFETY: the image was set up by a successful TIFFRGBAImageBegin and is
        // ended only here.
        unsafe { TIFFRGBAImageEnd(&mut *self.0) }
    }
}

/// Decodes the directory at `ifd_offset` into a canvas of `mode`, unpacking libtiff's
/// output with `rawmode`.
pub(super) fn decode(
    data: &[u8],
    mode: Mode,
    (width, height): (u32, u32),
    rawmode: &str,
    ifd_offset: u64,
) -> Result<Canvas, String> {
    silence();
    let unpacker = unpack::find(mode, rawmode)
        .ok_or_else(|| format!("unknown raw mode {rawmode} for mode {mode:?}"))?;
    let mut source = Source { data, pos: 0 };
    // SAFETY: the name and mode are NUL-terminated; `source` outlives the handle (the
    // handle is declared after it, so dropped first) and the callbacks only read it.
    let tif = unsafe {
        TIFFClientOpen(
            c"memory".as_ptr(),
            c"rC".as_ptr(),
            &mut source as *mut Source as *mut c_void,
            read_proc,
            write_proc,
            seek_proc,
            close_proc,
            size_proc,
            map_proc,
            unmap_proc,
        )
    };
    if tif.is_null() {
        return Err("libtiff cannot read the file".into());
    }
    let tif = Handle(tif);
    // SAFETY: live handle.
    if unsafe { TIFFSetSubDirectory(tif.0, ifd_offset) } == 0 {
        return Err("libtiff cannot read the image directory".into());
    }
    let w = tif.get::<u32>(TIFFTAG_IMAGEWIDTH, false).unwrap_or(0);
    let h = tif.get::<u32>(TIFFTAG_IMAGELENGTH, false).unwrap_or(0);
    if (w, h) != (width, height) {
        return Err(format!(
            "libtiff reads {w}x{h}, the tags say {width}x{height}"
        ));
    }
    let photometric = tif.get::<u16>(TIFFTAG_PHOTOMETRIC, false).unwrap_or(0);
    let compression = tif.get::<u16>(TIFFTAG_COMPRESSION, false).unwrap_or(0);
    let planar = tif.get::<u16>(TIFFTAG_PLANARCONFIG, true).unwrap_or(0);
    let mut canvas = Canvas::new(mode, width as usize, height as usize);
    let mut as_rgba = photometric == PHOTOMETRIC_YCBCR;
    if as_rgba && compression == COMPRESSION_JPEG && planar == PLANARCONFIG_CONTIG {
        // SAFETY: live handle; this pseudo-tag takes one int.
        unsafe { TIFFSetField(tif.0, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB) };
        as_rgba = false;
    }
    if as_rgba {
        read_rgba(&tif, &mut canvas, unpacker)?;
        return Ok(canvas);
    }
    let planes: Vec<Unpacker> = if planar == PLANARCONFIG_SEPARATE && mode.bands() > 1 {
        let bits = tif.get::<u16>(TIFFTAG_BITSPERSAMPLE, true).unwrap_or(8);
        if bits != 8 && bits != 16 {
            return Err(format!("{bits}-bit planes"));
        }
        (0..mode.bands())
            .map(|p| unpack::plane(p, bits == 16))
            .collect()
    } else {
        vec![unpacker]
    };
    if tif.is_tiled() {
        read_tiles(&tif, &mut canvas, &planes, unpacker.bits)?;
    } else {
        read_strips(&tif, &mut canvas, &planes, unpacker.bits)?;
    }
    // Separate planes of premultiplied (or unspecified) alpha: Pillow unpremultiplies
    // once they are all in.
    if planes.len() > 3 && mode == Mode::Rgba && matches!(tif.first_extra_sample(), Some(0 | 1)) {
        unpack::unpremultiply(&mut canvas.data);
    }
    Ok(canvas)
}

/// Pillow's `_decodeStrip`.
fn read_strips(
    tif: &Handle,
    canvas: &mut Canvas,
    planes: &[Unpacker],
    bits: usize,
) -> Result<(), String> {
    let (width, height) = (canvas.width, canvas.height);
    let rows = match tif.get::<u32>(TIFFTAG_ROWSPERSTRIP, false) {
        None | Some(u32::MAX) => height as u32,
        Some(rows) => rows,
    };
    if rows == 0 || rows > i32::MAX as u32 {
        return Err(format!("{rows} rows per strip"));
    }
    // SAFETY: live handle.
    let strip_size = unsafe { TIFFStripSize(tif.0) };
    if strip_size <= 0 || strip_size > i32::MAX as isize - 1 {
        return Err("libtiff cannot size the strips".into());
    }
    let unpacker_row = (width as u64 * bits as u64 / planes.len() as u64).div_ceil(8);
    if strip_size as u64 > unpacker_row * rows as u64 {
        return Err("the strips are larger than the mode expects".into());
    }
    // SAFETY: live handle.
    let row_size = unsafe { TIFFScanlineSize(tif.0) };
    if row_size <= 0 || unpacker_row > row_size as u64 {
        return Err("the rows are shorter than the mode expects".into());
    }
    let mut buf = vec![0u8; strip_size as usize];
    let mut y = 0usize;
    while y < height {
        for (plane, unpacker) in planes.iter().enumerate() {
            // SAFETY: live handle.
            let strip = unsafe { TIFFComputeStrip(tif.0, y as u32, plane as u16) };
            // SAFETY: live handle; `buf` holds `strip_size` bytes, the most libtiff
            // writes when told that size.
            let got = unsafe {
                TIFFReadEncodedStrip(tif.0, strip, buf.as_mut_ptr() as *mut c_void, strip_size)
            };
            if got == -1 {
                return Err(format!("libtiff cannot decode strip {strip}"));
            }
            for r in 0..(rows as usize).min(height - y) {
                let input = buf.get(r * row_size as usize..).unwrap_or(&[]);
                canvas.unpack_row(unpacker, (0, y + r), input, width)?;
            }
        }
        y += rows as usize;
    }
    Ok(())
}

/// Pillow's `_decodeTile`.
fn read_tiles(
    tif: &Handle,
    canvas: &mut Canvas,
    planes: &[Unpacker],
    bits: usize,
) -> Result<(), String> {
    let (width, height) = (canvas.width, canvas.height);
    // SAFETY: live handle.
    let (tile_bytes, row_size) = unsafe { (TIFFTileSize(tif.0), TIFFTileRowSize(tif.0)) };
    if tile_bytes <= 0 || row_size <= 0 || row_size > tile_bytes {
        return Err("libtiff cannot size the tiles".into());
    }
    if tile_bytes > i32::MAX as isize - 1 {
        return Err("tiles too large".into());
    }
    let tile_width = tif.get::<u32>(TIFFTAG_TILEWIDTH, false).unwrap_or(0);
    let tile_length = tif.get::<u32>(TIFFTAG_TILELENGTH, false).unwrap_or(0);
    if tile_width == 0 || tile_length == 0 || tile_width.max(tile_length) > i32::MAX as u32 {
        return Err(format!("{tile_width}x{tile_length} tiles"));
    }
    // Pillow's check, in its unsigned 32-bit arithmetic.
    let expected =
        (tile_length.wrapping_mul(bits as u32) / planes.len() as u32).wrapping_add(7) / 8;
    if tile_bytes as u64 > expected.wrapping_mul(tile_width) as u64 {
        return Err("the tiles are larger than the mode expects".into());
    }
    // A tile much larger than the image is a hostile header, not a picture.
    if tile_bytes as u64 > (canvas.data.len() as u64 * 16).max(64 << 20) {
        return Err("tiles far larger than the image".into());
    }
    let mut buf = vec![0u8; tile_bytes as usize];
    let (tw, tl) = (tile_width as usize, tile_length as usize);
    for y in (0..height).step_by(tl) {
        for (plane, unpacker) in planes.iter().enumerate() {
            for x in (0..width).step_by(tw) {
                // SAFETY: live handle; `buf` holds one tile (TIFFTileSize bytes).
                let got = unsafe {
                    TIFFReadTile(
                        tif.0,
                        buf.as_mut_ptr() as *mut c_void,
                        x as u32,
                        y as u32,
                        0,
                        plane as u16,
                    )
                };
                if got == -1 {
                    return Err(format!("libtiff cannot decode the tile at {x},{y}"));
                }
                let pixels = tw.min(width - x);
                for r in 0..tl.min(height - y) {
                    let input = buf.get(r * row_size as usize..).unwrap_or(&[]);
                    canvas.unpack_row(unpacker, (x, y + r), input, pixels)?;
                }
            }
        }
    }
    Ok(())
}

/// Pillow's `_decodeAsRGBA`: libtiff converts (YCbCr subsampling, old-style JPEG) to
/// RGBA, in blocks of a strip's or a tile's height across the whole width, with the
/// file's Orientation ignored (Pillow applies it afterwards).
fn read_rgba(tif: &Handle, canvas: &mut Canvas, unpacker: Unpacker) -> Result<(), String> {
    let (width, height) = (canvas.width, canvas.height);
    let block_tag = if tif.is_tiled() {
        TIFFTAG_TILELENGTH
    } else {
        TIFFTAG_ROWSPERSTRIP
    };
    let rows = match tif.get::<u32>(block_tag, true) {
        None | Some(u32::MAX) => height as u32,
        Some(rows) => rows,
    };
    let mut emsg: [c_char; 1024] = [0; 1024];
    // SAFETY: an all-zero TIFFRGBAImage is a valid value to hand to
    // TIFFRGBAImageBegin, which fills it in.
    let mut img: Box<RgbaImage> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: live handle; `emsg` has the 1024 bytes libtiff may write.
    let ok = unsafe {
        TIFFRGBAImageOK(tif.0, emsg.as_mut_ptr()) != 0
            && TIFFRGBAImageBegin(&mut *img, tif.0, 0, emsg.as_mut_ptr()) != 0
    };
    if !ok {
        // SAFETY: libtiff leaves a NUL-terminated message (or the zeroed buffer).
        let why = unsafe { CStr::from_ptr(emsg.as_ptr()) }
            .to_string_lossy()
            .replace(['\n', '\r'], " ");
        return Err(format!("libtiff cannot convert it to RGBA: {why}"));
    }
    let mut reader = RgbaReader(img);
    let img = &mut *reader.0;
    img.orientation = ORIENTATION_TOPLEFT;
    img.req_orientation = ORIENTATION_TOPLEFT;
    img.col_offset = 0;
    if img.width as usize != width || img.width > i32::MAX as u32 / 4 {
        return Err("libtiff's RGBA image is another width".into());
    }
    if rows == 0 || i32::MAX as u32 / (img.width * 4) < rows {
        return Err(format!("{rows} rows per block"));
    }
    let block = (rows as usize).min(height);
    let mut raster = vec![0u32; width * block];
    let mut bytes = vec![0u8; width * 4];
    let mut y = 0usize;
    while y < height {
        img.row_offset = y as c_int;
        let count = rows
            .min(img.height.saturating_sub(y as u32))
            .min(block as u32);
        // SAFETY: `raster` holds width x block pixels, and `count` <= block rows of
        // `img.width` (== width) pixels are asked for.
        if unsafe { TIFFRGBAImageGet(img, raster.as_mut_ptr(), img.width, count) } == 0 {
            return Err(format!("libtiff cannot convert the rows from {y} to RGBA"));
        }
        for r in 0..(rows as usize).min(height - y) {
            // libtiff packs each pixel as r | g << 8 | b << 16 | a << 24.
            let row = &raster[r * width..(r + 1) * width];
            for (b, p) in bytes.chunks_exact_mut(4).zip(row) {
                b.copy_from_slice(&p.to_le_bytes());
            }
            canvas.unpack_row(&unpacker, (0, y + r), &bytes, width)?;
        }
        y += rows as usize;
    }
    Ok(())
}

/// libtiff prints errors and warnings to stderr unless told otherwise; every failure
/// is reported as our own error instead.
fn silence() {
    static ONCE: Once = Once::new();
    // SAFETY: null handlers are libtiff's documented way to turn messages off.
    ONCE.call_once(|| unsafe {
        TIFFSetErrorHandler(std::ptr::null());
        TIFFSetWarningHandler(std::ptr::null());
    });
}

/// # Safety
/// `handle` is the `Source` given to TIFFClientOpen; `buf` has room for `size` bytes.
unsafe extern "C" fn read_proc(handle: *mut c_void, buf: *mut c_void, size: TmSize) -> TmSize {
    let source = &mut *(handle as *mut Source);
    let start = source.pos.min(source.data.len() as u64) as usize;
    let n = (size.max(0) as usize).min(source.data.len() - start);
    std::ptr::copy_nonoverlapping(source.data.as_ptr().add(start), buf as *mut u8, n);
    source.pos += n as u64;
    n as TmSize
}

/// Never called in read mode; writes nothing.
unsafe extern "C" fn write_proc(_: *mut c_void, _: *mut c_void, _: TmSize) -> TmSize {
    0
}

/// # Safety
/// `handle` is the `Source` given to TIFFClientOpen.
unsafe extern "C" fn seek_proc(handle: *mut c_void, offset: TOff, whence: c_int) -> TOff {
    let source = &mut *(handle as *mut Source);
    source.pos = match whence {
        0 => offset,
        1 => source.pos.wrapping_add(offset),
        2 => (source.data.len() as u64).wrapping_add(offset),
        _ => source.pos,
    };
    source.pos
}

unsafe extern "C" fn close_proc(_: *mut c_void) -> c_int {
    0
}

/// # Safety
/// `handle` is the `Source` given to TIFFClientOpen.
unsafe extern "C" fn size_proc(handle: *mut c_void) -> TOff {
    let source = &*(handle as *mut Source);
    source.data.len() as TOff
}

/// The whole file is already in memory: libtiff reads strips straight from it (it
/// never writes to a mapping opened for reading).
///
/// # Safety
/// `handle` is the `Source` given to TIFFClientOpen; `base` and `size` are writable.
unsafe extern "C" fn map_proc(
    handle: *mut c_void,
    base: *mut *mut c_void,
    size: *mut TOff,
) -> c_int {
    let source = &*(handle as *mut Source);
    *base = source.data.as_ptr() as *mut c_void;
    *size = source.data.len() as TOff;
    1
}

unsafe extern "C" fn unmap_proc(_: *mut c_void, _: *mut c_void, _: TOff) {}
