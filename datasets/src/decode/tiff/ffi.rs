//! The few functions of the system libtiff (4.x) and Little CMS 2 that the TIFF decoder
//! calls, declared by hand from `tiffio.h` and `lcms2.h`: Pillow decodes compressed
//! TIFFs with libtiff and converts CIELab with lcms2, so calling the same code is how
//! the pixels come out the same. Debian packages: `libtiff-dev`, `liblcms2-dev`.

use std::ffi::{c_char, c_int, c_void};

/// libtiff's opaque `TIFF` handle.
#[repr(C)]
pub struct Tiff {
    _private: [u8; 0],
}

/// libtiff's `tmsize_t` (a signed size) and `toff_t` (a file offset).
pub type TmSize = isize;
pub type TOff = u64;

pub type ReadWriteProc = unsafe extern "C" fn(*mut c_void, *mut c_void, TmSize) -> TmSize;
pub type SeekProc = unsafe extern "C" fn(*mut c_void, TOff, c_int) -> TOff;
pub type CloseProc = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type SizeProc = unsafe extern "C" fn(*mut c_void) -> TOff;
pub type MapProc = unsafe extern "C" fn(*mut c_void, *mut *mut c_void, *mut TOff) -> c_int;
pub type UnmapProc = unsafe extern "C" fn(*mut c_void, *mut c_void, TOff);

pub const TIFFTAG_IMAGEWIDTH: u32 = 256;
pub const TIFFTAG_IMAGELENGTH: u32 = 257;
pub const TIFFTAG_BITSPERSAMPLE: u32 = 258;
pub const TIFFTAG_COMPRESSION: u32 = 259;
pub const TIFFTAG_PHOTOMETRIC: u32 = 262;
pub const TIFFTAG_ROWSPERSTRIP: u32 = 278;
pub const TIFFTAG_PLANARCONFIG: u32 = 284;
pub const TIFFTAG_TILELENGTH: u32 = 323;
pub const TIFFTAG_TILEWIDTH: u32 = 322;
pub const TIFFTAG_EXTRASAMPLES: u32 = 338;
/// A pseudo-tag of libtiff's JPEG codec: have libjpeg convert YCbCr to RGB.
pub const TIFFTAG_JPEGCOLORMODE: u32 = 65538;
pub const JPEGCOLORMODE_RGB: c_int = 1;
pub const COMPRESSION_JPEG: u16 = 7;
pub const PHOTOMETRIC_YCBCR: u16 = 6;
pub const PLANARCONFIG_CONTIG: u16 = 1;
pub const PLANARCONFIG_SEPARATE: u16 = 2;
pub const ORIENTATION_TOPLEFT: u16 = 1;

/// `TIFFRGBAImage` from `tiffio.h` (unchanged through libtiff 4.x); the decoder sets
/// `orientation`, `req_orientation`, `row_offset` and `col_offset` as Pillow does and
/// leaves the rest to libtiff.
#[repr(C)]
pub struct RgbaImage {
    pub tif: *mut Tiff,
    pub stoponerr: c_int,
    pub is_contig: c_int,
    pub alpha: c_int,
    pub width: u32,
    pub height: u32,
    pub bitspersample: u16,
    pub samplesperpixel: u16,
    pub orientation: u16,
    pub req_orientation: u16,
    pub photometric: u16,
    pub redcmap: *mut u16,
    pub greencmap: *mut u16,
    pub bluecmap: *mut u16,
    pub get: *mut c_void,
    pub put: *mut c_void,
    pub map: *mut u8,
    pub bwmap: *mut *mut u32,
    pub palmap: *mut *mut u32,
    pub ycbcr: *mut c_void,
    pub cielab: *mut c_void,
    pub ua_to_aa: *mut u8,
    pub bitdepth16_to_8: *mut u8,
    pub row_offset: c_int,
    pub col_offset: c_int,
}

#[link(name = "tiff")]
extern "C" {
    pub fn TIFFClientOpen(
        name: *const c_char,
        mode: *const c_char,
        handle: *mut c_void,
        read: ReadWriteProc,
        write: ReadWriteProc,
        seek: SeekProc,
        close: CloseProc,
        size: SizeProc,
        map: MapProc,
        unmap: UnmapProc,
    ) -> *mut Tiff;
    pub fn TIFFClose(tif: *mut Tiff);
    pub fn TIFFSetSubDirectory(tif: *mut Tiff, offset: u64) -> c_int;
    pub fn TIFFGetField(tif: *mut Tiff, tag: u32, ...) -> c_int;
    pub fn TIFFGetFieldDefaulted(tif: *mut Tiff, tag: u32, ...) -> c_int;
    pub fn TIFFSetField(tif: *mut Tiff, tag: u32, ...) -> c_int;
    pub fn TIFFIsTiled(tif: *mut Tiff) -> c_int;
    pub fn TIFFStripSize(tif: *mut Tiff) -> TmSize;
    pub fn TIFFScanlineSize(tif: *mut Tiff) -> TmSize;
    pub fn TIFFTileSize(tif: *mut Tiff) -> TmSize;
    pub fn TIFFTileRowSize(tif: *mut Tiff) -> TmSize;
    pub fn TIFFComputeStrip(tif: *mut Tiff, row: u32, sample: u16) -> u32;
    pub fn TIFFReadEncodedStrip(
        tif: *mut Tiff,
        strip: u32,
        buf: *mut c_void,
        size: TmSize,
    ) -> TmSize;
    pub fn TIFFReadTile(tif: *mut Tiff, buf: *mut c_void, x: u32, y: u32, z: u32, s: u16)
        -> TmSize;
    pub fn TIFFRGBAImageOK(tif: *mut Tiff, emsg: *mut c_char) -> c_int;
    pub fn TIFFRGBAImageBegin(
        img: *mut RgbaImage,
        tif: *mut Tiff,
        stop_on_error: c_int,
        emsg: *mut c_char,
    ) -> c_int;
    pub fn TIFFRGBAImageGet(img: *mut RgbaImage, raster: *mut u32, w: u32, h: u32) -> c_int;
    pub fn TIFFRGBAImageEnd(img: *mut RgbaImage);
    /// Handlers are `void (*)(const char *, const char *, va_list)`; only null is
    /// ever passed here, so the type of the pointer does not matter.
    pub fn TIFFSetErrorHandler(handler: *const c_void) -> *const c_void;
    pub fn TIFFSetWarningHandler(handler: *const c_void) -> *const c_void;
}

/// lcms2's `TYPE_RGBA_8`: `COLORSPACE_SH(PT_RGB) | EXTRA_SH(1) | CHANNELS_SH(3) | BYTES_SH(1)`.
pub const TYPE_RGBA_8: u32 = (4 << 16) | (1 << 7) | (3 << 3) | 1;
/// Pillow's lcms2 format for mode `LAB`: `COLORSPACE_SH(PT_LabV2) | CHANNELS_SH(3) |
/// BYTES_SH(1) | EXTRA_SH(1)`, a and b stored with 128 added.
pub const TYPE_LABV2_8_EXTRA: u32 = (30 << 16) | (1 << 7) | (3 << 3) | 1;
pub const INTENT_PERCEPTUAL: u32 = 0;

#[link(name = "lcms2")]
extern "C" {
    pub fn cmsCreateLab2Profile(white_point: *const c_void) -> *mut c_void;
    pub fn cmsCreate_sRGBProfile() -> *mut c_void;
    pub fn cmsCloseProfile(profile: *mut c_void) -> c_int;
    pub fn cmsCreateTransform(
        input: *mut c_void,
        input_format: u32,
        output: *mut c_void,
        output_format: u32,
        intent: u32,
        flags: u32,
    ) -> *mut c_void;
    pub fn cmsDoTransform(
        transform: *mut c_void,
        input: *const c_void,
        output: *mut c_void,
        pixels: u32,
    );
    pub fn cmsDeleteTransform(transform: *mut c_void);
}
