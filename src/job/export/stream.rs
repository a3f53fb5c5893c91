//! Image outputs written by rows as they complete: PNG (the png crate's stream writer) and TIFF
//! (the tiff crate's strips), so that an image whose output is larger than memory is never held
//! whole. The tiled stage sends each band of finished rows, top to bottom, through a bounded
//! channel ([`BANDS_QUEUED`]); the writer, a task on the I/O pool, composes and encodes them into
//! the temporary file and renames it once the last row is written ([`write_atomic_then`]). Rows
//! that stop coming (the image failed, or the job was cancelled) leave no file.
//!
//! The pixels, channels ([`Planes`]: RGB with the input's alpha, grey, RGBA), alpha and metadata
//! are those [`super::image::write_image`] writes for the same image. JPEG and lossless WebP are not streamed: their encoders (image's) take the whole
//! image, so those outputs are held whole until encoded.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender};

use super::super::decode::Metadata;
use super::super::naming::OutputFormat;
use super::super::resume::Record;
use super::image::{Planes, red};
use super::write_atomic_then;
use crate::tiling::Pixels;

/// Bands of rows waiting for the writer: the stage waits while this many are queued, which
/// bounds the finished rows held in memory.
pub(crate) const BANDS_QUEUED: usize = 2;

/// The size of a PNG's image data chunks (IDAT) written by rows.
const IDAT_BYTES: usize = 1 << 20;

/// Whether outputs of `format` are written by rows (PNG, TIFF) rather than whole.
pub(crate) fn streams(format: OutputFormat) -> bool {
    matches!(format, OutputFormat::Png | OutputFormat::Tiff)
}

/// The channel a stage sends an image's bands of rows through (RGBA at the image's depth, full
/// width, top to bottom).
pub(crate) fn band_channel() -> (Sender<Pixels>, Receiver<Pixels>) {
    crossbeam_channel::bounded(BANDS_QUEUED)
}

/// One image written by rows: where, what size, and what it carries over.
pub(crate) struct StreamedImage {
    pub path: PathBuf,
    pub format: OutputFormat,
    pub png_compression: super::encode::PngCompression,
    /// Output size in pixels.
    pub width: u32,
    pub height: u32,
    /// 16 bits a channel (the image's depth).
    pub wide: bool,
    /// RGB with the input's alpha plane (resized to the output as
    /// [`super::image::write_image`] does), grey or RGBA.
    pub planes: Planes,
    pub meta: Metadata,
    pub record: Option<Record>,
}

/// The output's alpha plane at the output's size, 8 or 16 bits as the pixels.
enum AlphaPlane {
    Eight(image::GrayImage),
    Sixteen(image::ImageBuffer<image::Luma<u16>, Vec<u16>>),
}

impl StreamedImage {
    /// Writes the image from its bands as they arrive on `rows`: into a temporary file, renamed
    /// once every row is written. Fails (no file) if the rows stop before the last one.
    pub fn write(mut self, rows: &Receiver<Pixels>) -> Result<(), String> {
        self.meta = self.meta.for_output(self.planes.is_grey());
        let path = self.path.clone();
        let record = |tmp: &std::path::Path| {
            self.record
                .as_ref()
                .map_or(Ok(()), |r| r.append_written(tmp))
        };
        write_atomic_then(
            &path,
            |tmp| {
                let file = std::fs::File::create(tmp)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                let mut w = std::io::BufWriter::new(file);
                let written = match self.format {
                    OutputFormat::Tiff => self.tiff(&mut w, rows),
                    _ => self.png(&mut w, rows),
                };
                written
                    .and_then(|()| w.flush().map_err(|e| e.to_string()))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            },
            record,
        )
    }

    fn alpha_plane(&self) -> Option<AlphaPlane> {
        let filter = image::imageops::FilterType::CatmullRom;
        let (w, h) = (self.width, self.height);
        let Planes::Rgb(alpha) = &self.planes else {
            return None;
        };
        alpha.as_ref().map(|a| match self.wide {
            false => AlphaPlane::Eight(crate::resize::resize(&a.to_luma8(), w, h, filter)),
            true => AlphaPlane::Sixteen(crate::resize::resize(&a.to_luma16(), w, h, filter)),
        })
    }

    /// The bands in order, each as its rows' samples (RGB, or RGBA with the alpha plane; grey;
    /// RGBA), until the last row; an error if the rows stop before it.
    fn bands<'r>(
        &self,
        rows: &'r Receiver<Pixels>,
    ) -> impl Iterator<Item = Result<Samples, String>> + 'r {
        let alpha = self.alpha_plane();
        let kind = SampleKind::of(&self.planes);
        let (width, height) = (self.width, self.height);
        let mut y = 0u32;
        std::iter::from_fn(move || {
            if y >= height {
                return None;
            }
            let Ok(band) = rows.recv() else {
                y = height;
                return Some(Err("the image's rows stopped before its last row".into()));
            };
            let (w, h) = band.dimensions();
            if w != width || y + h > height {
                y = height;
                return Some(Err(format!(
                    "a band of {w}x{h} rows does not fit the image"
                )));
            }
            let samples = Samples::of(band, kind, alpha.as_ref(), y);
            y += h;
            Some(Ok(samples))
        })
    }

    fn png(&self, w: &mut impl Write, rows: &Receiver<Pixels>) -> Result<(), String> {
        let mut info = png::Info::with_size(self.width, self.height);
        // As image's PngEncoder (what whole outputs use): empty chunks are not written.
        info.icc_profile = self
            .meta
            .icc
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Cow::Borrowed);
        info.exif_metadata = self
            .meta
            .exif
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Cow::Borrowed);
        let mut bands = self
            .bands(rows)
            .map(|band| band.map(Samples::into_png_bytes));
        let first = bands.next().transpose()?.unwrap_or_default();
        let mut encoder = png::Encoder::with_info(w, info).map_err(|e| e.to_string())?;
        self.set_png_format(&mut encoder, &first)?;
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        let mut stream = writer
            .stream_writer_with_size(IDAT_BYTES)
            .map_err(|e| e.to_string())?;
        for bytes in std::iter::once(Ok(first)).chain(bands) {
            stream.write_all(&bytes?).map_err(|e| e.to_string())?;
        }
        stream.finish().map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())
    }

    /// The colour type, depth, filter and compression of image's `PngEncoder` (what whole
    /// outputs use): the level asked for; for `Fast` (the default) fdeflate's fast compression, unless it comes out larger than the data
    /// stored uncompressed (photos: fast compression only codes runs of zeros), where that
    /// encoder stores the data. A whole image is judged whole; rows are judged by the first
    /// band (`first`, PNG samples), encoded both ways (fast falls back to stored by itself, so
    /// the same size means stored).
    fn set_png_format<W: Write>(
        &self,
        encoder: &mut png::Encoder<'_, W>,
        first: &[u8],
    ) -> Result<(), String> {
        let color = match (self.planes.is_grey(), self.planes.has_alpha()) {
            (true, _) => png::ColorType::Grayscale,
            (false, true) => png::ColorType::Rgba,
            (false, false) => png::ColorType::Rgb,
        };
        let depth = match self.wide {
            true => png::BitDepth::Sixteen,
            false => png::BitDepth::Eight,
        };
        let row_bytes = self.width as usize * color.samples() * (depth as usize / 8);
        let encoded = |compression: png::Compression| {
            let mut out = Vec::new();
            let rows = (first.len() / row_bytes.max(1)) as u32;
            let mut e = png::Encoder::new(&mut out, self.width, rows.max(1));
            e.set_color(color);
            e.set_depth(depth);
            e.set_compression(compression);
            e.set_filter(png::Filter::Adaptive);
            e.write_header()
                .and_then(|mut w| w.write_image_data(first))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(out.len())
        };
        let stored = first.is_empty()
            || self.png_compression.deflate().is_some()
            || encoded(png::Compression::Fast)? >= encoded(png::Compression::NoCompression)?;
        encoder.set_color(color);
        encoder.set_depth(depth);
        encoder.set_filter(png::Filter::Adaptive);
        if let Some(level) = self.png_compression.deflate() {
            encoder.set_deflate_compression(level);
            return Ok(());
        }
        encoder.set_compression(match stored {
            true => png::Compression::NoCompression,
            false => png::Compression::Fast,
        });
        Ok(())
    }

    fn tiff<W: Write + std::io::Seek>(
        &self,
        w: &mut W,
        rows: &Receiver<Pixels>,
    ) -> Result<(), String> {
        use tiff::encoder::colortype::{Gray8, Gray16, RGB8, RGB16, RGBA8, RGBA16};
        let mut encoder = tiff::encoder::TiffEncoder::new(w).map_err(|e| e.to_string())?;
        let (width, height) = (self.width, self.height);
        let bands = self.bands(rows);
        let meta = &self.meta;
        let e = &mut encoder;
        match (self.wide, SampleKind::of(&self.planes)) {
            (false, SampleKind::Rgb) => tiff_strips::<RGB8, _>(e, width, height, meta, bands),
            (false, SampleKind::Rgba) => tiff_strips::<RGBA8, _>(e, width, height, meta, bands),
            (false, SampleKind::Grey) => tiff_strips::<Gray8, _>(e, width, height, meta, bands),
            (true, SampleKind::Rgb) => tiff_strips::<RGB16, _>(e, width, height, meta, bands),
            (true, SampleKind::Rgba) => tiff_strips::<RGBA16, _>(e, width, height, meta, bands),
            (true, SampleKind::Grey) => tiff_strips::<Gray16, _>(e, width, height, meta, bands),
        }
    }
}

/// Which samples of a band's RGBA pixels an output takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SampleKind {
    /// R, G, B.
    Rgb,
    /// R, G, B and an alpha: the input's alpha plane, or the pixels' own (a 4-channel model's).
    Rgba,
    /// R alone (a 1-channel model's output, in R, G and B).
    Grey,
}

impl SampleKind {
    fn of(planes: &Planes) -> SampleKind {
        match planes {
            Planes::Grey => SampleKind::Grey,
            p if p.has_alpha() => SampleKind::Rgba,
            _ => SampleKind::Rgb,
        }
    }
}

/// A band's samples, row after row: RGB, or RGBA where the output holds alpha, or grey.
enum Samples {
    Eight(Vec<u8>),
    Sixteen(Vec<u16>),
}

impl Samples {
    /// The samples as a PNG holds them (16-bit ones big-endian).
    fn into_png_bytes(self) -> Vec<u8> {
        match self {
            Samples::Eight(s) => s,
            Samples::Sixteen(s) => s.iter().flat_map(|v| v.to_be_bytes()).collect(),
        }
    }

    /// The samples of `band` (output rows from `y`) `kind` takes: its colour, with the alpha
    /// plane's rows where there is one, its own alpha for RGBA without one (else the alpha
    /// channel is dropped), or its red channel for grey.
    fn of(band: Pixels, kind: SampleKind, alpha: Option<&AlphaPlane>, y: u32) -> Samples {
        match (kind, &band) {
            (SampleKind::Grey, Pixels::Eight(b)) => return Samples::Eight(red(b.as_raw())),
            (SampleKind::Grey, Pixels::Sixteen(b)) => return Samples::Sixteen(red(b.as_raw())),
            (SampleKind::Rgba, _) if alpha.is_none() => {
                return match band {
                    Pixels::Eight(b) => Samples::Eight(b.into_raw()),
                    Pixels::Sixteen(b) => Samples::Sixteen(b.into_raw()),
                };
            }
            _ => {}
        }
        match (band, alpha) {
            (Pixels::Eight(b), Some(AlphaPlane::Eight(a))) => {
                let at = (y * b.width()) as usize;
                Samples::Eight(with_alpha(b.into_raw(), &a.as_raw()[at..]))
            }
            (Pixels::Sixteen(b), Some(AlphaPlane::Sixteen(a))) => {
                let at = (y * b.width()) as usize;
                Samples::Sixteen(with_alpha(b.into_raw(), &a.as_raw()[at..]))
            }
            (Pixels::Eight(b), _) => Samples::Eight(rgb(&b.into_raw())),
            (Pixels::Sixteen(b), _) => Samples::Sixteen(rgb(&b.into_raw())),
        }
    }
}

/// RGBA samples with their alpha replaced by `alpha` (one a pixel, from the first).
fn with_alpha<T: Copy>(mut rgba: Vec<T>, alpha: &[T]) -> Vec<T> {
    for (p, &a) in rgba.chunks_exact_mut(4).zip(alpha) {
        p[3] = a;
    }
    rgba
}

/// The RGB samples of RGBA samples.
fn rgb<T: Copy>(rgba: &[T]) -> Vec<T> {
    rgba.chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// Writes a TIFF image of colour type `C` strip by strip (the strip height the tiff crate
/// chooses, as for a whole image) from bands of samples, with `meta`'s ICC profile and EXIF.
fn tiff_strips<C, W>(
    encoder: &mut tiff::encoder::TiffEncoder<W>,
    width: u32,
    height: u32,
    meta: &Metadata,
    bands: impl Iterator<Item = Result<Samples, String>>,
) -> Result<(), String>
where
    C: tiff::encoder::colortype::ColorType,
    C::Inner: FromSamples,
    [C::Inner]: tiff::encoder::TiffValue,
    W: Write + std::io::Seek,
{
    let mut image = super::tiff_file::new_image::<W, C>(encoder, width, height, meta)?;
    let mut strip: Vec<C::Inner> = Vec::new();
    for band in bands {
        let samples = C::Inner::from_samples(band?)?;
        let mut taken = 0;
        while taken < samples.len() {
            let want = image.next_strip_sample_count() as usize;
            let take = (want - strip.len()).min(samples.len() - taken);
            strip.extend_from_slice(&samples[taken..taken + take]);
            taken += take;
            if strip.len() == want {
                image.write_strip(&strip).map_err(|e| e.to_string())?;
                strip.clear();
            }
        }
    }
    if image.next_strip_sample_count() > 0 {
        return Err("the image's rows stopped before its last row".into());
    }
    image.finish().map_err(|e| e.to_string())
}

/// The sample type of a TIFF colour type, taken out of a band's samples.
trait FromSamples: Sized + Copy {
    fn from_samples(s: Samples) -> Result<Vec<Self>, String>;
}

impl FromSamples for u8 {
    fn from_samples(s: Samples) -> Result<Vec<u8>, String> {
        match s {
            Samples::Eight(v) => Ok(v),
            Samples::Sixteen(_) => Err("16-bit rows for an 8-bit image".into()),
        }
    }
}

impl FromSamples for u16 {
    fn from_samples(s: Samples) -> Result<Vec<u16>, String> {
        match s {
            Samples::Sixteen(v) => Ok(v),
            Samples::Eight(_) => Err("8-bit rows for a 16-bit image".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::image::write_image;
    use super::*;
    use crate::job::naming::ExportOptions;
    use image::DynamicImage;

    /// The image's writer on a thread of its own, as on the I/O pool.
    fn writer(
        image: StreamedImage,
        rows: Receiver<Pixels>,
    ) -> std::thread::JoinHandle<Result<(), String>> {
        std::thread::Builder::new()
            .name("batchwise-test-writer".into())
            .spawn(move || image.write(&rows))
            .unwrap()
    }

    /// An odd-sized output (37 x 23) with every channel varying, 8 or 16-bit.
    fn pixels(wide: bool) -> Pixels {
        let rgba = image::RgbaImage::from_fn(37, 23, |x, y| {
            image::Rgba([(x * 7) as u8, (y * 11) as u8, (x * y) as u8, 200])
        });
        match wide {
            false => Pixels::Eight(rgba),
            true => Pixels::Sixteen(image::ImageBuffer::from_fn(37, 23, |x, y| {
                let p = rgba.get_pixel(x, y);
                image::Rgba([0, 1, 2, 3].map(|c| u16::from(p[c]) * 256 + x as u16))
            })),
        }
    }

    /// The input's alpha plane (half the output's size, as under a 2x model).
    fn alpha(wide: bool) -> DynamicImage {
        let a = image::GrayImage::from_fn(19, 12, |x, y| image::Luma([(x * 13 + y * 5) as u8]));
        match wide {
            false => DynamicImage::ImageLuma8(a),
            true => DynamicImage::ImageLuma16(DynamicImage::ImageLuma8(a).to_luma16()),
        }
    }

    /// `pixels` cut into bands of `rows` rows (the last one shorter), top to bottom.
    fn bands(pixels: &Pixels, rows: u32) -> Vec<Pixels> {
        let (w, h) = pixels.dimensions();
        (0..h)
            .step_by(rows as usize)
            .map(|y| {
                let rows = rows.min(h - y);
                match pixels {
                    Pixels::Eight(i) => {
                        Pixels::Eight(image::imageops::crop_imm(i, 0, y, w, rows).to_image())
                    }
                    Pixels::Sixteen(i) => {
                        Pixels::Sixteen(image::imageops::crop_imm(i, 0, y, w, rows).to_image())
                    }
                }
            })
            .collect()
    }

    fn streamed(path: &std::path::Path, format: OutputFormat, wide: bool) -> StreamedImage {
        StreamedImage {
            path: path.to_path_buf(),
            format,
            png_compression: Default::default(),
            width: 37,
            height: 23,
            wide,
            planes: Planes::Rgb(None),
            meta: Metadata::default(),
            record: None,
        }
    }

    /// Written by rows, PNG and TIFF decode to the same pixels (8 and 16-bit; RGB with and
    /// without the input's alpha, grey, RGBA) as the same image written whole, and carry the
    /// same ICC profile (where it is of the output's colour space) and EXIF (TIFF: its tags).
    #[test]
    fn rows_decode_to_the_pixels_of_the_whole_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut icc = vec![7; 300];
        icc[16..20].copy_from_slice(b"RGB ");
        let meta = Metadata {
            icc: Some(icc),
            exif: Some(super::super::tiff_file::tests::chunk()),
        };
        let kinds = |wide| {
            [
                ("rgb", Planes::Rgb(None)),
                ("alpha", Planes::Rgb(Some(alpha(wide)))),
                ("grey", Planes::Grey),
                ("rgba", Planes::Rgba),
            ]
        };
        for format in [OutputFormat::Png, OutputFormat::Tiff] {
            for wide in [false, true] {
                for (kind, planes) in kinds(wide) {
                    let case = format!("{format:?} wide={wide} {kind}");
                    let export = ExportOptions {
                        format,
                        ..ExportOptions::default()
                    };
                    let whole = dir.path().join(format!("whole.{}", format.extension()));
                    let p = planes.clone();
                    write_image(&whole, pixels(wide), p, &meta, &export, None).unwrap();
                    let by_rows = dir.path().join(format!("rows.{}", format.extension()));
                    let (tx, rx) = band_channel();
                    let grey = planes.is_grey();
                    let image = StreamedImage {
                        planes,
                        meta: meta.clone(),
                        ..streamed(&by_rows, format, wide)
                    };
                    let writer = writer(image, rx);
                    for band in bands(&pixels(wide), 5) {
                        tx.send(band).unwrap();
                    }
                    drop(tx);
                    writer.join().unwrap().unwrap();
                    let (a, b) = (image::open(&whole).unwrap(), image::open(&by_rows).unwrap());
                    assert_eq!(a.color(), b.color(), "{case}");
                    assert_eq!(a.as_bytes(), b.as_bytes(), "{case}");
                    let want = match (kind, wide) {
                        ("grey", false) => image::ColorType::L8,
                        ("grey", true) => image::ColorType::L16,
                        ("rgb", false) => image::ColorType::Rgb8,
                        ("rgb", true) => image::ColorType::Rgb16,
                        (_, false) => image::ColorType::Rgba8,
                        (_, true) => image::ColorType::Rgba16,
                    };
                    assert_eq!(b.color(), want, "{case}");
                    // Grey is the pixels' red; RGBA keeps the pixels' own alpha (200).
                    let source = pixels(wide);
                    match (kind, &source, &b) {
                        ("grey", Pixels::Eight(s), DynamicImage::ImageLuma8(g)) => {
                            assert!(s.pixels().zip(g.pixels()).all(|(s, g)| s[0] == g[0]));
                        }
                        ("rgba", Pixels::Eight(s), DynamicImage::ImageRgba8(o)) => {
                            assert_eq!(s.as_raw(), o.as_raw(), "{case}");
                        }
                        _ => {}
                    }
                    let icc = |p: &std::path::Path| {
                        use image::ImageDecoder as _;
                        let file = std::io::BufReader::new(std::fs::File::open(p).unwrap());
                        let mut d: Box<dyn image::ImageDecoder> = match format {
                            OutputFormat::Png => {
                                Box::new(image::codecs::png::PngDecoder::new(file).unwrap())
                            }
                            _ => Box::new(image::codecs::tiff::TiffDecoder::new(file).unwrap()),
                        };
                        let exif = match format {
                            OutputFormat::Png => d.exif_metadata().unwrap(),
                            // TIFF holds EXIF as tags, read back below.
                            _ => None,
                        };
                        (d.icc_profile().unwrap(), exif)
                    };
                    assert_eq!(icc(&whole), icc(&by_rows), "{case}");
                    assert_eq!(icc(&by_rows).0, meta.for_output(grey).icc, "{case}");
                    if format == OutputFormat::Tiff {
                        use super::super::tiff_file::tests::photo_tags;
                        assert_eq!(photo_tags(&whole), photo_tags(&by_rows), "{case}");
                        assert_eq!(
                            photo_tags(&by_rows).date_time_original.as_deref(),
                            Some("2024:05:06 07:08:09"),
                            "{case}"
                        );
                    }
                }
            }
        }
    }

    /// As whole PNGs are, rows of noise (which fast compression would grow) are stored, and a
    /// flat image is compressed.
    #[test]
    fn rows_of_noise_are_stored_and_flat_rows_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.png");
        let mut state = 0x2545_f491_u32;
        let noise = image::RgbaImage::from_fn(37, 23, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            image::Rgba(state.to_le_bytes())
        });
        let flat = image::RgbaImage::from_pixel(37, 23, image::Rgba([9, 9, 9, 255]));
        let raw = 37 * 23 * 3;
        for (pixels, stored) in [(noise, true), (flat, false)] {
            let (tx, rx) = band_channel();
            let writer = writer(streamed(&path, OutputFormat::Png, false), rx);
            for band in bands(&Pixels::Eight(pixels), 5) {
                tx.send(band).unwrap();
            }
            drop(tx);
            writer.join().unwrap().unwrap();
            let bytes = std::fs::metadata(&path).unwrap().len();
            match stored {
                true => assert!(bytes > raw && bytes < raw + 200, "{bytes}"),
                false => assert!(bytes < raw / 4, "{bytes}"),
            }
        }
    }

    /// Rows that stop before the last one (the image failed, the job was cancelled), or a
    /// write that fails part way (here a band that does not fit), leave no file: neither the
    /// output nor its temporary file.
    #[test]
    fn rows_that_stop_early_or_fail_leave_no_file() {
        for format in [OutputFormat::Png, OutputFormat::Tiff] {
            for fails in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(format!("out.{}", format.extension()));
                let (tx, rx) = band_channel();
                let image = streamed(&path, format, false);
                let writer = writer(image, rx);
                for band in bands(&pixels(false), 5).into_iter().take(3) {
                    tx.send(band).unwrap();
                }
                if fails {
                    let _ = tx.send(Pixels::Eight(image::RgbaImage::new(36, 5)));
                }
                drop(tx);
                let e = writer.join().unwrap().unwrap_err();
                let says = match fails {
                    true => "does not fit",
                    false => "stopped before its last row",
                };
                assert!(e.contains(says) && e.contains("cannot write"), "{e}");
                let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
                assert!(left.is_empty(), "{format:?}: {left:?}");
            }
        }
    }
}
