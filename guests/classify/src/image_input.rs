//! From image bytes to the model's input tensor: format and size checks on the header (before
//! any pixel memory is allocated), decoding, centre crop of 224/256 of the short side, bicubic
//! resize to 224x224 (the same filter as PIL's, which the native reference in
//! `scripts/nn/classify_native.py` uses), and `(x - 127) / 128` per channel, laid out NCHW as
//! f32 little-endian.

use std::io::Cursor;

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

/// The centre square of 224/256 of the short side, resized to 224x224 with a bicubic filter
/// (Keys, a = -0.5, widened by the scale when shrinking, as PIL's `BICUBIC` does), one axis
/// at a time, rounding to 8 bits after each pass as PIL does.
///
/// Both passes are shaped for wasm, where the node interrupts long-running guests with a check
/// at every loop back-edge (epoch interruption): across rows, each output pixel's taps are
/// padded to a fixed count so its loop unrolls; down columns, whole rows are scaled and summed,
/// which vectorises. Both sum in the same order as a plain per-pixel loop, so the result is the
/// same to the bit (docs/benchmarks.md has the figures).
fn crop_and_resize(image: &RgbImage) -> RgbImage {
    let (width, height) = image.dimensions();
    let (width_f, height_f) = (f64::from(width), f64::from(height));
    let side = width_f.min(height_f) * f64::from(SIDE) / 256.0;
    // The crop box's edges rounded as Python's round() does (half to even), like the reference.
    let (left, top) = ((width_f - side) / 2.0, (height_f - side) / 2.0);
    let (x0, x1) = (left.round_ties_even(), (left + side).round_ties_even());
    let (y0, y1) = (top.round_ties_even(), (top + side).round_ties_even());
    let columns = taps(x0, (x1 - x0).clamp(1.0, width_f - x0), width as usize);
    let rows = taps(y0, (y1 - y0).clamp(1.0, height_f - y0), height as usize);
    let (first_row, last_row) = (
        rows.iter().map(|t| t.start).min().unwrap_or(0),
        rows.iter()
            .map(|t| t.start + t.weights.len())
            .max()
            .unwrap_or(0),
    );

    // Horizontal pass over the rows the vertical pass reads: (last_row - first_row) x SIDE.
    let row_len = SIDE as usize * 3;
    let mut across = vec![0u8; (last_row - first_row) * row_len];
    let lines = image
        .as_raw()
        .chunks_exact(width as usize * 3)
        .skip(first_row)
        .zip(across.chunks_exact_mut(row_len));
    let width = width as usize;
    if let Some(fixed) = fixed_taps::<4>(&columns, width) {
        lines.for_each(|(line, out)| resize_line(&fixed, line, out));
    } else if let Some(fixed) = fixed_taps::<6>(&columns, width) {
        lines.for_each(|(line, out)| resize_line(&fixed, line, out));
    } else if let Some(fixed) = fixed_taps::<8>(&columns, width) {
        lines.for_each(|(line, out)| resize_line(&fixed, line, out));
    } else {
        // Wide taps (a large image shrunk a lot): the loop over them is long anyway.
        lines.for_each(|(line, out)| resize_line_any_taps(&columns, line, out));
    }
    let out = resize_columns(&rows, &across, first_row);
    RgbImage::from_raw(SIDE, SIDE, out).unwrap_or_default()
}

/// `taps` padded with zero weights to exactly `N` each, the windows that would pass the end of
/// a line of `len` pixels moved left by the padding; `None` when a tap is wider than `N`.
/// Adding `0 * pixel` to a sum leaves it unchanged, so the results are those of the unpadded
/// taps.
fn fixed_taps<const N: usize>(taps: &[Tap], len: usize) -> Option<Vec<(usize, [f32; N])>> {
    taps.iter()
        .map(|tap| {
            let count = tap.weights.len();
            if count > N || N > len {
                return None;
            }
            let start = tap.start.min(len - N);
            let shift = tap.start - start;
            let mut weights = [0f32; N];
            weights[shift..shift + count].copy_from_slice(&tap.weights);
            Some((start, weights))
        })
        .collect()
}

/// One line of RGB pixels resampled with taps of exactly `N` weights.
fn resize_line<const N: usize>(taps: &[(usize, [f32; N])], line: &[u8], out: &mut [u8]) {
    for (&(start, weights), out) in taps.iter().zip(out.chunks_exact_mut(3)) {
        weighted_pixel(&weights, &line[start * 3..][..N * 3], out);
    }
}

/// [`resize_line`] for taps of any width.
fn resize_line_any_taps(taps: &[Tap], line: &[u8], out: &mut [u8]) {
    for (tap, out) in taps.iter().zip(out.chunks_exact_mut(3)) {
        let pixels = &line[tap.start * 3..][..tap.weights.len() * 3];
        weighted_pixel(&tap.weights, pixels, out);
    }
}

/// The RGB pixel `weights` make of consecutive RGB `pixels`, written to `out`. Inlined, so a
/// fixed number of weights unrolls the loop.
#[inline(always)]
fn weighted_pixel(weights: &[f32], pixels: &[u8], out: &mut [u8]) {
    let mut sum = [0f32; 3];
    for (w, px) in weights.iter().zip(pixels.chunks_exact(3)) {
        for c in 0..3 {
            sum[c] += w * f32::from(px[c]);
        }
    }
    for c in 0..3 {
        out[c] = to_u8(sum[c]);
    }
}

/// The vertical pass: each output row is the weighted sum of whole rows of `across` (whose
/// first row is source row `first_row`), summed one row at a time into a row of f32.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn resize_columns(rows: &[Tap], across: &[u8], first_row: usize) -> Vec<u8> {
    let row_len = SIDE as usize * 3;
    let mut sums = vec![0f32; row_len];
    let mut out = vec![0u8; rows.len() * row_len];
    for (tap, out_row) in rows.iter().zip(out.chunks_exact_mut(row_len)) {
        sums.fill(0.0);
        for (k, &w) in tap.weights.iter().enumerate() {
            let row = &across[(tap.start + k - first_row) * row_len..][..row_len];
            for (sum, &v) in sums.iter_mut().zip(row) {
                *sum += w * f32::from(v);
            }
        }
        for (out, &sum) in out_row.iter_mut().zip(&sums) {
            *out = to_u8(sum);
        }
    }
    out
}

/// The source pixels one output pixel reads, and their weights.
struct Tap {
    start: usize,
    weights: Vec<f32>,
}

/// Resampling taps mapping `[offset, offset + length)` of an axis of `source_len` pixels onto
/// [`SIDE`] output pixels.
fn taps(offset: f64, length: f64, source_len: usize) -> Vec<Tap> {
    let scale = length / f64::from(SIDE);
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..SIDE)
        .map(|i| {
            let center = offset + (f64::from(i) + 0.5) * scale;
            let start = (center - support).floor().max(0.0) as usize;
            let end = ((center + support).ceil() as usize).min(source_len);
            let raw: Vec<f64> = (start..end)
                .map(|j| cubic((j as f64 + 0.5 - center) / filter_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| {
                    if total == 0.0 {
                        0.0
                    } else {
                        (w / total) as f32
                    }
                })
                .collect();
            Tap { start, weights }
        })
        .collect()
}

/// Keys' cubic convolution kernel with a = -0.5.
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn to_u8(value: f32) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
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
