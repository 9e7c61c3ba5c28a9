//! WebP through libwebp's animation decoder, the path Pillow takes for every WebP file:
//! the first frame on a transparent canvas, non-premultiplied RGBA, with libwebp's fancy
//! chroma upsampling for lossy files. Pillow keeps the alpha only when the bitstream
//! says it has one.

use std::ffi::c_int;

use image::{DynamicImage, RgbImage, RgbaImage};
use libwebp_sys as webp;

use super::orientation::Metadata;
use super::Failure;

struct Decoder(*mut webp::WebPAnimDecoder);

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by WebPAnimDecoderNew and deleted once.
        unsafe { webp::WebPAnimDecoderDelete(self.0) }
    }
}

impl Decoder {
    /// The first chunk named `fourcc` ("EXIF", "XMP "), copied out.
    fn chunk(&self, fourcc: &[u8; 5]) -> Option<Vec<u8>> {
        // SAFETY: the demuxer belongs to the live decoder; the iterator is released
        // after its bytes are copied.
        unsafe {
            let demux = webp::WebPAnimDecoderGetDemuxer(self.0);
            let mut iter: webp::WebPChunkIterator = std::mem::zeroed();
            if webp::WebPDemuxGetChunk(demux, fourcc.as_ptr().cast(), 1, &mut iter) == 0 {
                return None;
            }
            let bytes = std::slice::from_raw_parts(iter.chunk.bytes, iter.chunk.size).to_vec();
            webp::WebPDemuxReleaseChunkIterator(&mut iter);
            Some(bytes)
        }
    }
}

pub(super) fn decode(data: &[u8], max_pixels: u64) -> Result<(DynamicImage, Metadata), Failure> {
    let bad = |what: &str| Failure::Bad(format!("libwebp: {what}"));
    // SAFETY: the features struct is plain data that WebPGetFeatures fills.
    let mut features: webp::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    let status = unsafe { webp::WebPGetFeatures(data.as_ptr(), data.len(), &mut features) };
    if status != webp::VP8StatusCode::VP8_STATUS_OK {
        return Err(bad(&format!("not a readable WebP bitstream ({status:?})")));
    }
    Failure::check_size(features.width as u32, features.height as u32, max_pixels)?;
    let src = webp::WebPData {
        bytes: data.as_ptr(),
        size: data.len(),
    };
    // SAFETY: `src` points into `data`, which outlives the decoder; null options are
    // libwebp's defaults (MODE_RGBA, no threads), as Pillow passes them.
    let raw = unsafe { webp::WebPAnimDecoderNew(&src, std::ptr::null()) };
    if raw.is_null() {
        return Err(bad("could not create decoder"));
    }
    let dec = Decoder(raw);
    let mut info = webp::WebPAnimInfo::default();
    // SAFETY: a live decoder and a plain struct to fill.
    if unsafe { webp::WebPAnimDecoderGetInfo(dec.0, &mut info) } == 0 {
        return Err(bad("could not read the canvas"));
    }
    let (w, h) = (info.canvas_width, info.canvas_height);
    Failure::check_size(w, h, max_pixels)?;
    let mut buf: *mut u8 = std::ptr::null_mut();
    let mut timestamp: c_int = 0;
    // SAFETY: on success `buf` points to the decoder's w * h * 4 canvas bytes, valid
    // until the next call on the decoder; they are copied before it is dropped.
    let rgba = unsafe {
        if webp::WebPAnimDecoderGetNext(dec.0, &mut buf, &mut timestamp) == 0 {
            return Err(bad("failed to read the first frame"));
        }
        std::slice::from_raw_parts(buf, w as usize * h as usize * 4).to_vec()
    };
    let meta = Metadata {
        exif: dec.chunk(b"EXIF\0"),
        xmp: dec.chunk(b"XMP \0"),
    };
    let built = "a buffer of the canvas's own size";
    let img = if features.has_alpha != 0 {
        RgbaImage::from_raw(w, h, rgba).expect(built).into()
    } else {
        let rgb = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        RgbImage::from_raw(w, h, rgb).expect(built).into()
    };
    Ok((img, meta))
}
