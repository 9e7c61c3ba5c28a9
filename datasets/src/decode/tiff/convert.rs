//! Pillow's image modes handed over as the `DynamicImage` that
//! `vision_encoder::preprocess::convert_to_rgb` turns into the bytes transformers'
//! `convert_to_rgb` gets from Pillow: colour kept as `Rgb8`, alpha as `Rgba8`/`LumaA8`
//! (composited later), 16-bit gray as `Luma16` (clipped later), and the modes with no
//! such counterpart converted here as Pillow's `convert("RGB")` converts them:
//! `I` and `F` clipped to 0..255 (`F` truncated), palettes looked up, CMYK by
//! `cmyk2rgb`, YCbCr by Pillow's fixed-point JPEG formulas, CIELab through lcms2
//! exactly as `ImageCms` builds the transform.

use std::ffi::c_void;

use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageBuffer, Luma, RgbImage, RgbaImage};

use super::ffi::*;
use super::unpack::{Canvas, Mode};

pub(super) fn to_image(canvas: Canvas, palette: Option<&[u8]>) -> Result<DynamicImage, String> {
    let (w, h) = (canvas.width as u32, canvas.height as u32);
    let data = canvas.data;
    let pixels = |n: usize| data.chunks_exact(n);
    let made = "a buffer of the image's own size";
    Ok(match canvas.mode {
        Mode::One | Mode::L => GrayImage::from_raw(w, h, data).ok_or(made)?.into(),
        Mode::I16 | Mode::I16B => {
            let v: Vec<u16> = pixels(2)
                .map(|p| u16::from_ne_bytes([p[0], p[1]]))
                .collect();
            ImageBuffer::<Luma<u16>, _>::from_raw(w, h, v)
                .ok_or(made)?
                .into()
        }
        // Pillow's `i2rgb` and `f2l`: clipped, floats truncated toward zero.
        Mode::I => {
            let v = pixels(4)
                .map(|p| i32::from_ne_bytes([p[0], p[1], p[2], p[3]]).clamp(0, 255) as u8)
                .collect();
            GrayImage::from_raw(w, h, v).ok_or(made)?.into()
        }
        Mode::F => {
            let v = pixels(4)
                .map(|p| f32::from_ne_bytes([p[0], p[1], p[2], p[3]]) as u8)
                .collect();
            GrayImage::from_raw(w, h, v).ok_or(made)?.into()
        }
        Mode::LA => {
            let v = pixels(4).flat_map(|p| [p[0], p[3]]).collect();
            GrayAlphaImage::from_raw(w, h, v).ok_or(made)?.into()
        }
        Mode::La => return Err("Pillow cannot convert mode La to RGB".into()),
        Mode::P | Mode::PA => {
            let table = palette_table(palette.unwrap_or(&[]));
            if canvas.mode == Mode::P {
                let v = data.iter().flat_map(|&i| table[i as usize]).collect();
                RgbImage::from_raw(w, h, v).ok_or(made)?.into()
            } else {
                let v = pixels(4)
                    .flat_map(|p| {
                        let [r, g, b] = table[p[0] as usize];
                        [r, g, b, p[3]]
                    })
                    .collect();
                RgbaImage::from_raw(w, h, v).ok_or(made)?.into()
            }
        }
        Mode::Rgb => {
            let v = pixels(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            RgbImage::from_raw(w, h, v).ok_or(made)?.into()
        }
        Mode::Rgba => RgbaImage::from_raw(w, h, data).ok_or(made)?.into(),
        Mode::Cmyk => {
            let v = pixels(4)
                .flat_map(|p| cmyk_to_rgb([p[0], p[1], p[2], p[3]]))
                .collect();
            RgbImage::from_raw(w, h, v).ok_or(made)?.into()
        }
        Mode::YCbCr => {
            let v = pixels(4)
                .flat_map(|p| ycbcr_to_rgb([p[0], p[1], p[2]]))
                .collect();
            RgbImage::from_raw(w, h, v).ok_or(made)?.into()
        }
        // transformers sees the "A" band of LAB and composites: alpha comes from the
        // fourth byte (255 as Pillow unpacks LAB).
        Mode::Lab => RgbaImage::from_raw(w, h, lab_to_rgba(&data, canvas.width)?)
            .ok_or(made)?
            .into(),
    })
}

/// The 256 palette entries Pillow builds from a TIFF ColorMap (all reds, then greens,
/// then blues); entries the map does not reach are black.
fn palette_table(map: &[u8]) -> [[u8; 3]; 256] {
    let n = map.len() / 3;
    let mut table = [[0u8; 3]; 256];
    for (i, entry) in table.iter_mut().enumerate().take(n) {
        *entry = [map[i], map[n + i], map[2 * n + i]];
    }
    table
}

/// Pillow's `cmyk2rgb`: with nk = 255 - K, each channel is nk - C·nk/255 (rounded).
fn cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let nk = 255 - k as u32;
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (nk - muldiv255(v as u32, nk)) as u8)
}

/// Pillow's `ImagingConvertYCbCr2RGB` (JPEG's full-range YCbCr, whatever the TIFF's
/// ReferenceBlackWhite says): the chroma terms come from tables of
/// `(int)(coefficient * 64 * (c - 128) + 0.5)`, shifted down by 6 bits.
fn ycbcr_to_rgb([y, cb, cr]: [u8; 3]) -> [u8; 3] {
    let term = |coefficient: f64, c: u8| (coefficient * 64.0 * (c as f64 - 128.0) + 0.5) as i32;
    let y = y as i32;
    let r = y + (term(1.402, cr) >> 6);
    let g = y + ((term(-0.34414, cb) + term(-0.71414, cr)) >> 6);
    let b = y + (term(1.772, cb) >> 6);
    [r, g, b].map(|v| v.clamp(0, 255) as u8)
}

/// `Image.convert("RGBA")` of a `LAB` image: lcms2's transform from its built-in Lab
/// (D50) profile to sRGB, perceptual intent, with the fourth byte copied as alpha as
/// Pillow's `pyCMScopyAux` copies it.
fn lab_to_rgba(lab: &[u8], width: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; lab.len()];
    if width == 0 {
        return Ok(out);
    }
    // SAFETY: the profiles and transform are checked for null, used only here and
    // freed once; every cmsDoTransform row reads and writes `width` 4-byte pixels
    // inside `lab` and `out`, which have the same length.
    unsafe {
        let lab_profile = cmsCreateLab2Profile(std::ptr::null());
        let srgb = cmsCreate_sRGBProfile();
        let transform = if lab_profile.is_null() || srgb.is_null() {
            std::ptr::null_mut()
        } else {
            cmsCreateTransform(
                lab_profile,
                TYPE_LABV2_8_EXTRA,
                srgb,
                TYPE_RGBA_8,
                INTENT_PERCEPTUAL,
                0,
            )
        };
        for profile in [lab_profile, srgb] {
            if !profile.is_null() {
                cmsCloseProfile(profile);
            }
        }
        if transform.is_null() {
            return Err("lcms2 cannot build the Lab to sRGB transform".into());
        }
        for (src, dst) in lab
            .chunks_exact(width * 4)
            .zip(out.chunks_exact_mut(width * 4))
        {
            cmsDoTransform(
                transform,
                src.as_ptr() as *const c_void,
                dst.as_mut_ptr() as *mut c_void,
                width as u32,
            );
        }
        cmsDeleteTransform(transform);
    }
    for (o, l) in out.chunks_exact_mut(4).zip(lab.chunks_exact(4)) {
        o[3] = l[3];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pillow 13's `Image.frombytes("YCbCr", ...).convert("RGB")` of these pixels.
    #[test]
    fn ycbcr_converts_as_pillow() {
        let cases = [
            ([0, 0, 0], [0, 135, 0]),
            ([255, 255, 255], [255, 120, 255]),
            ([16, 128, 128], [16, 16, 16]),
            ([235, 16, 240], [255, 193, 36]),
            ([81, 90, 240], [238, 14, 13]),
            ([145, 54, 34], [13, 237, 13]),
            ([41, 240, 110], [15, 15, 239]),
            ([1, 127, 129], [2, 0, 0]),
        ];
        for (ycc, rgb) in cases {
            assert_eq!(ycbcr_to_rgb(ycc), rgb, "{ycc:?}");
        }
    }

    /// Pillow 13's `Image.frombytes("CMYK", ...).convert("RGB")` of these pixels.
    #[test]
    fn cmyk_converts_as_pillow() {
        assert_eq!(cmyk_to_rgb([0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb([255, 255, 255, 255]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb([10, 100, 200, 50]), [197, 125, 44]);
        assert_eq!(cmyk_to_rgb([200, 30, 90, 128]), [27, 112, 82]);
    }
}
