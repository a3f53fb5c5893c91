//! The fuzz targets' bodies, shared by the AFL binaries (`src/bin/*.rs`) and the replay tests.
//! Each takes one input's bytes and must return for every input: an `Err` is fine, a panic, an
//! abort, a hang or an allocation of gigabytes is a finding.

use batchwise::kernels::pack::PixelDepth;
use batchwise::tiling::{self, Pixels};
use batchwise::upscale::{AUTO_TILE_SIZES, TileSource};

/// ONNX: decode and lower with free sizes (`onnx::load`), then with every shape fixed
/// (`onnx::load_at_size`) at the file's own size and at a small size.
pub fn onnx(data: &[u8]) {
    let _ = batchwise::onnx::load(data, "fuzz.onnx");
    let _ = batchwise::onnx::load_at_size(data, "fuzz.onnx", None);
    let _ = batchwise::onnx::load_at_size(data, "fuzz.onnx", Some((8, 8)));
}

/// NCNN: the input is the `.param` text, a NUL byte, then the `.bin` bytes (no NUL: an empty
/// `.bin`).
pub fn ncnn(data: &[u8]) {
    let (param, bin) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let param = String::from_utf8_lossy(param);
    let _ = batchwise::ncnn::load_bytes(&param, bin, "fuzz.param");
}

/// Side and memory limits for the image target: far below the job's (32768 px, 4 GiB) so that a
/// file claiming a large size is refused instead of taking the fuzzer's memory; the code paths
/// are the same.
pub const MAX_SIDE: u32 = 2048;
pub const MAX_ALLOC: u64 = 32 << 20;

/// The image front end: bytes -> decoded (limits, EXIF orientation, 8 or 16 bits, alpha plane)
/// -> tiles with context at both pixel depths, as a tiled job cuts them.
pub fn image(data: &[u8]) {
    let Ok(pixels) = decode(data) else { return };
    let (w, h) = pixels.dimensions();
    // A tile size and context from the image, so both vary with the input.
    let tile = AUTO_TILE_SIZES[((w ^ h) as usize) % AUTO_TILE_SIZES.len()];
    let context = (w.wrapping_mul(31) ^ h) % 9;
    let side = (tile + 2 * context) as usize;
    let mut eight = vec![0u32; side * side];
    let mut wide = vec![0u32; 2 * side * side];
    for rect in tiling::grid(w, h, tile) {
        pixels.extract_tile(rect, tile, context, PixelDepth::Eight, &mut eight);
        pixels.extract_tile(rect, tile, context, PixelDepth::Sixteen, &mut wide);
    }
}

/// The steps of `batchwise::job::decode::decode` (private to the crate, and reading a path) on
/// bytes in memory with the limits above: guessed format, limits, ICC and EXIF read, orientation
/// applied, 8 or 16-bit RGBA and the alpha plane where it is not opaque.
pub fn decode(data: &[u8]) -> Result<Pixels, String> {
    use image::ImageDecoder as _;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    if reader.format().is_none() {
        return Err("unknown format".into());
    }
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let _icc = decoder.icc_profile().ok().flatten();
    let _exif = decoder.exif_metadata().ok().flatten().map(|mut chunk| {
        let _ = image::metadata::Orientation::remove_from_exif_chunk(&mut chunk);
        chunk
    });
    let orientation = decoder.orientation().ok();
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    if img.width() == 0 || img.height() == 0 {
        return Err("empty".into());
    }
    let deep = img.color().bytes_per_pixel() / img.color().channel_count() > 1;
    let has_alpha = img.color().has_alpha();
    if deep {
        let rgba = img.to_rgba16();
        if has_alpha {
            let a = image::ImageBuffer::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Luma([rgba.get_pixel(x, y)[3]])
            });
            std::hint::black_box(a.pixels().any(|p| p[0] != u16::MAX));
        }
        Ok(Pixels::Sixteen(rgba))
    } else {
        let rgba = img.to_rgba8();
        if has_alpha {
            let a = image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Luma([rgba.get_pixel(x, y)[3]])
            });
            std::hint::black_box(a.pixels().any(|p| p[0] != u8::MAX));
        }
        Ok(Pixels::Eight(rgba))
    }
}
