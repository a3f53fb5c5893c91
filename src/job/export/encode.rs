//! Encoder settings shared by whole outputs ([`super::image`]) and outputs written by rows
//! ([`super::stream`]): the PNG compression level, the ICC profile an output may carry (only one
//! of its own colour space), and lossy WebP (libwebp, through the
//! `webp` crate) with the ICC profile and EXIF in its container.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::super::decode::Metadata;

/// How hard PNG outputs are compressed (`--png-compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PngCompression {
    /// fdeflate's fast compression, stored instead where it would grow the data (noisy photos):
    /// the fastest to write.
    #[default]
    Fast,
    /// zlib level 6 (libpng's default).
    Balanced,
    /// zlib level 9: the smallest files, the slowest.
    Best,
    /// A zlib level, 0 (stored) to 9.
    Level(u8),
}

impl FromStr for PngCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fast" => Ok(PngCompression::Fast),
            "balanced" | "default" => Ok(PngCompression::Balanced),
            "best" => Ok(PngCompression::Best),
            level => match level.parse::<u8>() {
                Ok(n @ 0..=9) => Ok(PngCompression::Level(n)),
                _ => Err(format!(
                    "{s:?} is not a PNG compression: fast, balanced, best, or a level 0 to 9"
                )),
            },
        }
    }
}

impl PngCompression {
    /// The setting of image's PNG encoder (whole outputs).
    pub(crate) fn image_type(self) -> image::codecs::png::CompressionType {
        use image::codecs::png::CompressionType;
        match self {
            PngCompression::Fast => CompressionType::Fast,
            PngCompression::Balanced => CompressionType::Default,
            PngCompression::Best => CompressionType::Best,
            PngCompression::Level(0) => CompressionType::Uncompressed,
            PngCompression::Level(n) => CompressionType::Level(n),
        }
    }

    /// The png crate's setting (outputs written by rows) for every level but `Fast`, whose
    /// choice between fast and stored [`super::stream`] makes from the first band.
    pub(crate) fn deflate(self) -> Option<png::DeflateCompression> {
        use png::DeflateCompression;
        match self {
            PngCompression::Fast => None,
            PngCompression::Balanced => Some(DeflateCompression::Level(6)),
            PngCompression::Best => Some(DeflateCompression::Level(9)),
            PngCompression::Level(0) => Some(DeflateCompression::NoCompression),
            PngCompression::Level(n) => Some(DeflateCompression::Level(n)),
        }
    }
}

/// The colour space an ICC profile describes (its header's bytes 16..20): `RGB `, `GRAY`,
/// `CMYK`, ...; None for a profile too short to have a header.
pub fn icc_colour_space(icc: &[u8]) -> Option<[u8; 4]> {
    (icc.len() >= 128).then(|| [icc[16], icc[17], icc[18], icc[19]])
}

impl Metadata {
    /// What an output of grey (`grey`) or RGB pixels carries over: the ICC profile only where
    /// its colour space is the output's (a grey or CMYK profile on RGB pixels would misdescribe
    /// them), the EXIF as it is.
    pub fn for_output(&self, grey: bool) -> Metadata {
        let wanted: &[u8; 4] = if grey { b"GRAY" } else { b"RGB " };
        Metadata {
            icc: self
                .icc
                .clone()
                .filter(|icc| icc_colour_space(icc).as_ref() == Some(wanted)),
            exif: self.exif.clone(),
        }
    }
}

/// The largest side a WebP image holds.
pub const WEBP_MAX_SIDE: u32 = 16383;

/// `img` (RGB8 or RGBA8) as a lossy WebP file at `quality` (1-100; libwebp's alpha plane is
/// compressed losslessly), with `meta`'s ICC profile and EXIF in an extended (VP8X) container.
pub(crate) fn webp_lossy(
    img: &image::DynamicImage,
    quality: u8,
    meta: &Metadata,
) -> Result<Vec<u8>, String> {
    let (w, h) = (img.width(), img.height());
    if w > WEBP_MAX_SIDE || h > WEBP_MAX_SIDE {
        return Err(format!(
            "a WebP image holds at most {WEBP_MAX_SIDE} px a side, this one is {w}x{h}; write \
             PNG or TIFF (--format)"
        ));
    }
    let encoder = match img {
        image::DynamicImage::ImageRgb8(i) => webp::Encoder::from_rgb(i.as_raw(), w, h),
        image::DynamicImage::ImageRgba8(i) => webp::Encoder::from_rgba(i.as_raw(), w, h),
        _ => return Err("lossy WebP takes 8-bit RGB or RGBA pixels".into()),
    };
    let encoded = encoder
        .encode_simple(false, f32::from(quality.clamp(1, 100)))
        .map_err(|e| format!("libwebp could not encode the image: {e:?}"))?;
    with_metadata(&encoded, w, h, meta)
}

/// A simple WebP file (`RIFF` `WEBP` with a `VP8 ` chunk, or `VP8X` + `ALPH` + `VP8 ` with
/// alpha) with the ICC profile (`ICCP`) and EXIF (`EXIF`) added in the order the container
/// specification gives: VP8X, ICCP, the image's chunks, EXIF.
fn with_metadata(webp: &[u8], w: u32, h: u32, meta: &Metadata) -> Result<Vec<u8>, String> {
    let icc = meta.icc.as_deref().filter(|c| !c.is_empty());
    let exif = meta.exif.as_deref().filter(|c| !c.is_empty());
    if icc.is_none() && exif.is_none() {
        return Ok(webp.to_vec());
    }
    if webp.len() < 12 || &webp[..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return Err("libwebp gave no WebP file".into());
    }
    // The image's chunks, without the VP8X header libwebp writes for alpha.
    let mut flags = 0u8;
    let mut image_chunks = Vec::new();
    let mut at = 12;
    while at + 8 <= webp.len() {
        let size = u32::from_le_bytes([webp[at + 4], webp[at + 5], webp[at + 6], webp[at + 7]]);
        let end = (at + 8).saturating_add(size as usize + (size as usize & 1));
        let chunk = webp
            .get(at..end.min(webp.len()))
            .ok_or("libwebp gave a cut WebP file")?;
        match &chunk[..4] {
            b"VP8X" => flags |= chunk.get(8).copied().unwrap_or(0) & 0x10, // alpha
            _ => image_chunks.extend_from_slice(chunk),
        }
        at = end;
    }
    let chunk = |tag: &[u8; 4], data: &[u8]| {
        let mut c = tag.to_vec();
        c.extend((data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    flags |= if icc.is_some() { 0x20 } else { 0 } | if exif.is_some() { 0x08 } else { 0 };
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(b"VP8X", &vp8x));
    if let Some(icc) = icc {
        body.extend(chunk(b"ICCP", icc));
    }
    body.extend(image_chunks);
    if let Some(exif) = exif {
        body.extend(chunk(b"EXIF", exif));
    }
    let mut file = b"RIFF".to_vec();
    file.extend((body.len() as u32).to_le_bytes());
    file.extend(body);
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile of `space` (header only: what the colour-space check reads).
    pub(crate) fn profile(space: &[u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 200];
        p[16..20].copy_from_slice(space);
        p
    }

    #[test]
    fn png_compression_reads_names_and_levels() {
        assert_eq!("fast".parse(), Ok(PngCompression::Fast));
        assert_eq!("BEST".parse(), Ok(PngCompression::Best));
        assert_eq!("default".parse(), Ok(PngCompression::Balanced));
        assert_eq!("0".parse(), Ok(PngCompression::Level(0)));
        assert_eq!("9".parse(), Ok(PngCompression::Level(9)));
        for bad in ["10", "-1", "slow", ""] {
            let e = bad.parse::<PngCompression>().unwrap_err();
            assert!(e.contains("fast, balanced, best"), "{e}");
        }
    }

    #[test]
    fn a_profile_travels_only_to_pixels_of_its_colour_space() {
        let meta = |icc: Vec<u8>| Metadata {
            icc: Some(icc),
            exif: Some(vec![1, 2]),
        };
        let rgb = meta(profile(b"RGB "));
        assert!(rgb.for_output(false).icc.is_some());
        assert!(rgb.for_output(true).icc.is_none());
        let grey = meta(profile(b"GRAY"));
        assert!(grey.for_output(false).icc.is_none());
        assert!(grey.for_output(true).icc.is_some());
        assert!(meta(profile(b"CMYK")).for_output(false).icc.is_none());
        assert!(meta(vec![7; 40]).for_output(false).icc.is_none());
        assert_eq!(grey.for_output(false).exif, Some(vec![1, 2]));
    }

    /// Lossy WebP decodes (image's decoder) to the image within lossy error, with alpha, and
    /// carries the ICC profile and EXIF; it is smaller than lossless WebP of the same image.
    #[test]
    fn lossy_webp_decodes_with_its_metadata_and_is_smaller_than_lossless() {
        use image::ImageDecoder as _;
        // Smooth gradients (what lossy coding keeps well), alpha varying.
        let img = image::RgbaImage::from_fn(67, 41, |x, y| {
            image::Rgba([(x * 3) as u8, (y * 5) as u8, (x + y) as u8, (100 + x) as u8])
        });
        let img = image::DynamicImage::ImageRgba8(img);
        let meta = Metadata {
            icc: Some(profile(b"RGB ")),
            exif: Some(b"MM\0*\0\0\0\x08\0\0\0".to_vec()),
        };
        let lossy = webp_lossy(&img, 80, &meta).unwrap();
        let mut d =
            image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&lossy[..])).unwrap();
        assert_eq!(d.icc_profile().unwrap(), meta.icc);
        assert_eq!(d.exif_metadata().unwrap(), meta.exif);
        let back = image::DynamicImage::from_decoder(d).unwrap().to_rgba8();
        assert_eq!(back.dimensions(), (67, 41));
        let diffs: Vec<u8> = back
            .as_raw()
            .iter()
            .zip(img.as_bytes())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        // Lossy colour at quality 80 on gradients: a few levels on average (measured ~1);
        // alpha is coded losslessly.
        assert!(mean < 4.0, "{mean}");
        assert!(
            back.pixels()
                .zip(img.to_rgba8().pixels())
                .all(|(a, b)| a[3] == b[3])
        );
        // On a photo (the fixture), lossy is smaller than lossless, both without metadata.
        let photo = image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photo-60x44.png"
        ))
        .unwrap()
        .to_rgb8();
        let photo = image::DynamicImage::ImageRgb8(photo);
        let lossy = webp_lossy(&photo, 80, &Metadata::default()).unwrap();
        let mut lossless = Vec::new();
        photo
            .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(
                &mut lossless,
            ))
            .unwrap();
        assert!(
            lossy.len() < lossless.len(),
            "{} {}",
            lossy.len(),
            lossless.len()
        );
        // Without metadata, libwebp's own file.
        let plain = webp_lossy(&img, 80, &Metadata::default()).unwrap();
        assert!(image::load_from_memory(&plain).is_ok());
    }
}
