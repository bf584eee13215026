//! From image bytes to the model's input tensor: format and size checks on the header (before
//! any pixel memory is allocated), decoding, centre crop of 224/256 of the short side, bicubic
//! resize to 224x224, and `(x - 127) / 128` per channel, laid out NCHW as f32 little-endian.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// Side of the square the model takes.
pub const SIDE: u32 = 224;
/// Largest image accepted, in pixels (12 MP: 4000x3000 camera frames, 4K video frames).
pub const MAX_PIXELS: u64 = 12_000_000;
/// Memory the decoder may allocate, in bytes.
const MAX_DECODER_ALLOC: u64 = 80 * 1024 * 1024;

/// Decodes `bytes` (JPEG or PNG) and returns the input tensor, or a message for the client.
pub fn to_tensor(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let format = match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png)) => format,
        Ok(other) => {
            return Err(format!(
                "{other:?} images are not accepted; send a JPEG or PNG"
            ));
        }
        Err(_) => {
            return Err(
                "the body is not an image: expected JPEG or PNG bytes (the file itself, not \
                 a form upload or base64)"
                    .into(),
            );
        }
    };
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|err| format!("the {format:?} header is invalid: {err}"))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(format!(
            "the image is {width}x{height} ({} MP); the largest accepted is {} MP, downscale \
             it before sending",
            pixels / 1_000_000,
            MAX_PIXELS / 1_000_000
        ));
    }
    if width == 0 || height == 0 {
        return Err(format!("the image is {width}x{height}: it has no pixels"));
    }
    if format == ImageFormat::Jpeg && !has_end_marker(bytes) {
        return Err("the JPEG is truncated (no end-of-image marker); send the whole file".into());
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|err| format!("the {format:?} image cannot be decoded: {err}"))?;
    Ok(normalise(&crop_and_resize(&image.into_rgb8())))
}

/// A JPEG ends with the EOI marker `FF D9`, possibly followed by padding some writers add.
fn has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The centre square of 224/256 of the short side, resized to 224x224 (bicubic).
fn crop_and_resize(image: &RgbImage) -> RgbImage {
    let (width, height) = image.dimensions();
    let side = f64::from(width.min(height)) * f64::from(SIDE) / 256.0;
    let left = ((f64::from(width) - side) / 2.0).round() as u32;
    let top = ((f64::from(height) - side) / 2.0).round() as u32;
    let side = (side.round() as u32).max(1);
    let side_w = side.min(width - left);
    let side_h = side.min(height - top);
    let crop = image::imageops::crop_imm(image, left, top, side_w, side_h).to_image();
    image::imageops::resize(&crop, SIDE, SIDE, FilterType::CatmullRom)
}

/// RGB pixels to `(x - 127) / 128`, NCHW, f32 little-endian bytes.
fn normalise(image: &RgbImage) -> Vec<u8> {
    let plane = (SIDE * SIDE) as usize;
    let mut out = vec![0u8; 3 * plane * 4];
    for (i, pixel) in image.pixels().enumerate() {
        for channel in 0..3 {
            let value = (f32::from(pixel.0[channel]) - 127.0) / 128.0;
            let at = (channel * plane + i) * 4;
            out[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
    }
    out
}
