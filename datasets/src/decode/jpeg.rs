//! JPEG through libjpeg-turbo, the library Pillow links, with the settings Pillow leaves
//! at libjpeg's defaults (accurate integer IDCT, fancy chroma upsampling): the only way to
//! get Pillow's pixels for subsampled colour, whose upsampling and YCbCr conversion round
//! differently in every other decoder.
//!
//! Pillow's modes follow the component count: gray stays gray, three components become
//! RGB, four are CMYK that Pillow reads inverted ("Adobe conventions") and transformers
//! converts with Pillow's `cmyk2rgb`.

use std::ffi::{c_int, CStr};

use image::{DynamicImage, GrayImage, RgbImage};
use turbojpeg_sys as tj;

use super::Failure;

/// More scans than any encoder writes; a hostile progressive file could ask for millions.
const MAX_SCANS: c_int = 1000;

struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Handle {
    fn message(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
        unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: a valid handle and a parameter id from the header.
        unsafe { tj::tj3Get(self.0, param as c_int) }
    }

    fn error_code(&self) -> c_int {
        // SAFETY: a valid handle.
        unsafe { tj::tj3GetErrorCode(self.0) }
    }

    /// A call's status: libjpeg-turbo goes on after a warning, as Pillow does, except at
    /// the end of the data, which Pillow refuses as a truncated file.
    fn check(&self, status: c_int) -> Result<(), Failure> {
        if status == 0 {
            return Ok(());
        }
        let message = self.message();
        let fatal = self.error_code() != tj::TJERR_TJERR_WARNING as c_int;
        if fatal || message.contains("Premature end of JPEG file") {
            return Err(Failure::Bad(message));
        }
        Ok(())
    }

    fn set(&self, param: tj::TJPARAM, value: c_int) -> Result<(), Failure> {
        // SAFETY: as above.
        match unsafe { tj::tj3Set(self.0, param as c_int, value) } {
            0 => Ok(()),
            _ => Err(Failure::Bad(self.message())),
        }
    }
}

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<DynamicImage, Failure> {
    // SAFETY: tj3Init has no preconditions; a null handle is checked.
    let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
    if raw.is_null() {
        return Err(Failure::Bad("libjpeg-turbo could not start".into()));
    }
    let h = Handle(raw);
    // SAFETY: `data` outlives the call; the library only reads it.
    let status = unsafe { tj::tj3DecompressHeader(h.0, data.as_ptr(), data.len() as tj::size_t) };
    h.check(status)?;
    let width = h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH).max(0) as u32;
    let height = h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT).max(0) as u32;
    if width == 0 || height == 0 {
        return Err(Failure::Bad("no image in the JPEG data".into()));
    }
    Failure::check_size(width, height, max_pixels)?;
    let precision = h.get(tj::TJPARAM_TJPARAM_PRECISION);
    if precision != 8 {
        return Err(Failure::Bad(format!(
            "{precision}-bit samples are not supported (8-bit JPEG only, as Pillow)"
        )));
    }
    let (format, channels) = match h.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS {
        tj::TJCS_TJCS_GRAY => (tj::TJPF_TJPF_GRAY, 1),
        tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (tj::TJPF_TJPF_CMYK, 4),
        _ => (tj::TJPF_TJPF_RGB, 3),
    };
    h.set(tj::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS)?;
    let mut pixels = vec![0u8; width as usize * height as usize * channels];
    // SAFETY: `pixels` holds exactly width * height * channels bytes, the packed size
    // (pitch 0) of the pixel format asked for.
    let status = unsafe {
        tj::tj3Decompress8(
            h.0,
            data.as_ptr(),
            data.len() as tj::size_t,
            pixels.as_mut_ptr(),
            0,
            format,
        )
    };
    h.check(status)?;
    let built = "a buffer of the image's own size";
    Ok(match channels {
        1 => GrayImage::from_raw(width, height, pixels)
            .expect(built)
            .into(),
        3 => RgbImage::from_raw(width, height, pixels)
            .expect(built)
            .into(),
        _ => RgbImage::from_raw(width, height, inverted_cmyk_to_rgb(&pixels))
            .expect(built)
            .into(),
    })
}

/// Pillow's `CMYK;I` reading (each value inverted) followed by its `cmyk2rgb`:
/// `255 - k - c * (255 - k) / 255`, the division rounded as Pillow's MULDIV255 does.
fn inverted_cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let nk = p[3] as u32; // 255 - (255 - stored k)
        for &v in &p[..3] {
            let c = 255 - v as u32;
            let t = c * nk + 128;
            rgb.push((nk - (((t >> 8) + t) >> 8)) as u8);
        }
    }
    rgb
}
