//! TIFF outputs and their metadata, for whole outputs ([`super::image`]) and outputs written by
//! rows ([`super::stream`]): the ICC profile (InterColorProfile, 34675, as image's TIFF encoder
//! writes it) and the input's EXIF as TIFF holds it. The EXIF we carry is itself a TIFF
//! structure; in a TIFF file its tags live in the image's own directory (who made the photo,
//! when: [`MAIN_TAGS`]) and in sub-directories the image's directory points at (ExifIFD, 34665:
//! the exposure, DateTimeOriginal, ...; GPSInfo, 34853). So the chunk is read entry by entry and
//! written again: the photo's tags into the output's directory, the Exif and GPS directories as
//! directories of their own. Not carried: the Orientation (the pixels were turned upright on
//! reading), the tags that describe the old file's pixels and layout, and what points into the
//! old file ([`DROPPED_EXIF_TAGS`]). A chunk that cannot be read is left out; the output is
//! written without it.

use std::io::{Seek, Write};

use image::DynamicImage;
use tiff::encoder::colortype::{self, ColorType};
use tiff::encoder::{ImageEncoder, TiffEncoder, TiffKindStandard};
use tiff::tags::{Tag, Type};

use super::super::decode::Metadata;

/// Tags of the EXIF chunk's main directory (IFD0) that describe the photo, not its pixels:
/// ImageDescription, Make, Model, Software, DateTime, Artist, HostComputer, Copyright. The rest
/// of IFD0 (size, samples, strips, resolution, Orientation, the thumbnail's) is the old file's.
const MAIN_TAGS: &[u16] = &[
    0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x013C, 0x8298,
];

/// The Exif directory's tags not carried: the old pixel size (PixelXDimension,
/// PixelYDimension), the Interoperability directory's pointer (an offset into the old chunk)
/// and the maker note (whose private offsets point into the old chunk).
const DROPPED_EXIF_TAGS: &[u16] = &[0xA002, 0xA003, 0xA005, 0x927C];

/// ExifIFD and GPSInfo: pointers to the sub-directories.
const EXIF_POINTER: u16 = 0x8769;
const GPS_POINTER: u16 = 0x8825;

/// The most bytes one entry's values may take (a chunk is at most 64 KiB in a JPEG).
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// One EXIF entry, its values in this machine's byte order (as the tiff crate writes them).
#[derive(Clone, Debug, PartialEq)]
struct RawEntry {
    tag: u16,
    ty: Type,
    bytes: Vec<u8>,
}

/// An input's EXIF as a TIFF output holds it: the tags of the image's own directory, and the
/// Exif and GPS sub-directories.
#[derive(Clone, Debug, Default)]
pub(crate) struct TiffExif {
    main: Vec<RawEntry>,
    exif: Vec<RawEntry>,
    gps: Vec<RawEntry>,
}

/// Reads a TIFF structure's directories, bounds checked.
struct Chunk<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Chunk<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self.big_endian {
            true => u16::from_be_bytes(b),
            false => u16::from_le_bytes(b),
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self.big_endian {
            true => u32::from_be_bytes(b),
            false => u32::from_le_bytes(b),
        })
    }

    /// The entries of the directory at `at` (entries of unknown types left out), with their
    /// values turned to this machine's byte order; None where the directory does not fit.
    fn directory(&self, at: usize) -> Option<Vec<RawEntry>> {
        let count = self.u16(at)? as usize;
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let e = at + 2 + 12 * i;
            let (tag, ty, n) = (self.u16(e)?, self.u16(e + 2)?, self.u32(e + 4)? as usize);
            // Classic TIFF's types (BigTIFF's 64-bit ones do not occur in a chunk).
            let Some(ty) = Type::from_u16(ty).filter(|_| (1..=13).contains(&ty)) else {
                continue;
            };
            let unit = swap_unit(ty);
            let scalar = if matches!(ty, Type::RATIONAL | Type::SRATIONAL) {
                8
            } else {
                unit
            };
            let len = n.checked_mul(scalar).filter(|&l| l <= MAX_ENTRY_BYTES)?;
            let start = match len <= 4 {
                true => e + 8,
                false => self.u32(e + 8)? as usize,
            };
            let mut bytes = self.bytes.get(start..start.checked_add(len)?)?.to_vec();
            if self.big_endian != cfg!(target_endian = "big") {
                bytes.chunks_exact_mut(unit).for_each(<[u8]>::reverse);
            }
            entries.push(RawEntry { tag, ty, bytes });
        }
        Some(entries)
    }
}

/// The byte-order unit of a type's values (a rational is two 4-byte integers).
fn swap_unit(ty: Type) -> usize {
    match ty {
        Type::SHORT | Type::SSHORT => 2,
        Type::LONG | Type::SLONG | Type::FLOAT | Type::IFD | Type::RATIONAL | Type::SRATIONAL => 4,
        Type::DOUBLE => 8,
        _ => 1,
    }
}

impl TiffExif {
    /// The entries of `chunk` (a TIFF structure, possibly after JPEG's `Exif\0\0`) a TIFF output
    /// carries; None where it is not one that can be read.
    pub fn parse(chunk: &[u8]) -> Option<TiffExif> {
        let bytes = chunk.strip_prefix(b"Exif\0\0").unwrap_or(chunk);
        let big_endian = match bytes.get(..4)? {
            [b'I', b'I', 42, 0] => false,
            [b'M', b'M', 0, 42] => true,
            _ => return None,
        };
        let c = Chunk { bytes, big_endian };
        let ifd0 = c.directory(c.u32(4)? as usize)?;
        let pointer = |tag: u16| {
            ifd0.iter()
                .find(|e| e.tag == tag && matches!(e.ty, Type::LONG | Type::IFD))
                .and_then(|e| Some(u32::from_ne_bytes(e.bytes.get(..4)?.try_into().ok()?)))
        };
        // A sub-directory that cannot be read is left out; the others are kept.
        let sub = |tag| pointer(tag).and_then(|at| c.directory(at as usize));
        let keep_values = |e: &RawEntry| e.ty != Type::IFD;
        Some(TiffExif {
            main: ifd0
                .iter()
                .filter(|e| MAIN_TAGS.contains(&e.tag))
                .cloned()
                .collect(),
            exif: sub(EXIF_POINTER)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| !DROPPED_EXIF_TAGS.contains(&e.tag) && keep_values(e))
                .collect(),
            gps: sub(GPS_POINTER)
                .unwrap_or_default()
                .into_iter()
                .filter(keep_values)
                .collect(),
        })
    }

    /// Writes the Exif and GPS directories that have entries (before the image's directory,
    /// which points at them), and returns the image's pointer tags with their offsets.
    fn write_sub_directories<W: Write + Seek>(
        &self,
        encoder: &mut TiffEncoder<W>,
    ) -> Result<Vec<(Tag, u32)>, String> {
        let mut pointers = Vec::new();
        for (tag, entries) in [(EXIF_POINTER, &self.exif), (GPS_POINTER, &self.gps)] {
            if entries.is_empty() {
                continue;
            }
            let mut dir = encoder.extra_directory().map_err(|e| e.to_string())?;
            let mut written = tiff::Directory::empty();
            for e in entries {
                let entry = dir
                    .write_entry_bytes(e.ty, &e.bytes)
                    .map_err(|e| e.to_string())?;
                written.extend([(Tag::from_u16_exhaustive(e.tag), entry)]);
            }
            dir.extend_from(&written);
            let at = dir.finish_with_offsets().map_err(|e| e.to_string())?;
            pointers.push((Tag::from_u16_exhaustive(tag), at.offset));
        }
        Ok(pointers)
    }
}

/// A TIFF image of colour type `C` and `width x height`, its directory holding `meta`'s ICC
/// profile and EXIF, ready for its strips (the EXIF sub-directories are written first).
pub(crate) fn new_image<'e, W, C>(
    encoder: &'e mut TiffEncoder<W>,
    width: u32,
    height: u32,
    meta: &Metadata,
) -> Result<ImageEncoder<'e, W, C, TiffKindStandard>, String>
where
    W: Write + Seek,
    C: ColorType,
{
    let exif = meta
        .exif
        .as_deref()
        .and_then(TiffExif::parse)
        .unwrap_or_default();
    let pointers = exif.write_sub_directories(encoder)?;
    let mut image = encoder
        .new_image::<C>(width, height)
        .map_err(|e| e.to_string())?;
    let dir = image.encoder();
    if let Some(icc) = meta.icc.as_deref().filter(|icc| !icc.is_empty()) {
        dir.write_tag(Tag::IccProfile, icc)
            .map_err(|e| e.to_string())?;
    }
    let mut main = tiff::Directory::empty();
    for e in &exif.main {
        let entry = dir
            .write_entry_bytes(e.ty, &e.bytes)
            .map_err(|e| e.to_string())?;
        main.extend([(Tag::from_u16_exhaustive(e.tag), entry)]);
    }
    dir.extend_from(&main);
    for (tag, at) in pointers {
        dir.write_tag(tag, at).map_err(|e| e.to_string())?;
    }
    Ok(image)
}

/// Writes `img` whole as a TIFF file with `meta`'s ICC profile and EXIF: RGB, RGBA or grey, 8
/// or 16 bits a channel (any other colour type as 8-bit RGBA).
pub(crate) fn write_whole<W: Write + Seek>(
    w: W,
    img: &DynamicImage,
    meta: &Metadata,
) -> Result<(), String> {
    fn whole<W: Write + Seek, C: ColorType>(
        encoder: &mut TiffEncoder<W>,
        img: &DynamicImage,
        meta: &Metadata,
        data: &[C::Inner],
    ) -> Result<(), String>
    where
        [C::Inner]: tiff::encoder::TiffValue,
    {
        new_image::<W, C>(encoder, img.width(), img.height(), meta)?
            .write_data(data)
            .map_err(|e| e.to_string())
    }
    let mut encoder = TiffEncoder::new(w).map_err(|e| e.to_string())?;
    let e = &mut encoder;
    match img {
        DynamicImage::ImageRgb8(i) => whole::<W, colortype::RGB8>(e, img, meta, i.as_raw()),
        DynamicImage::ImageRgba8(i) => whole::<W, colortype::RGBA8>(e, img, meta, i.as_raw()),
        DynamicImage::ImageRgb16(i) => whole::<W, colortype::RGB16>(e, img, meta, i.as_raw()),
        DynamicImage::ImageRgba16(i) => whole::<W, colortype::RGBA16>(e, img, meta, i.as_raw()),
        DynamicImage::ImageLuma8(i) => whole::<W, colortype::Gray8>(e, img, meta, i.as_raw()),
        DynamicImage::ImageLuma16(i) => whole::<W, colortype::Gray16>(e, img, meta, i.as_raw()),
        other => {
            let rgba = other.to_rgba8();
            whole::<W, colortype::RGBA8>(e, img, meta, rgba.as_raw())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The photo's tags of a TIFF file, as a reader finds them: Make and Model in the image's
    /// directory, DateTimeOriginal and ExposureTime in its Exif directory, and whether the
    /// Orientation or the old pixel width are there.
    #[derive(Debug, PartialEq)]
    pub(crate) struct PhotoTags {
        pub make: Option<String>,
        pub model: Option<String>,
        pub date_time_original: Option<String>,
        pub exposure_time: Option<(u32, u32)>,
        pub orientation: bool,
        pub pixel_x_dimension: bool,
    }

    pub(crate) fn photo_tags(path: &std::path::Path) -> PhotoTags {
        use tiff::decoder::ifd::Value;
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut d = tiff::decoder::Decoder::new(file).unwrap();
        let text = |v: Option<Value>| match v {
            Some(Value::Ascii(s)) => Some(s),
            None => None,
            Some(other) => panic!("{other:?} is not text"),
        };
        let make = text(d.find_tag(Tag::Make).unwrap());
        let model = text(d.find_tag(Tag::Model).unwrap());
        let orientation = d.find_tag(Tag::Orientation).unwrap().is_some();
        let exif_at = d.find_tag_unsigned::<u64>(Tag::ExifDirectory).unwrap();
        let (mut date_time_original, mut exposure_time, mut pixel_x_dimension) =
            (None, None, false);
        if let Some(at) = exif_at {
            let dir = d.read_directory(tiff::tags::IfdPointer(at)).unwrap();
            let mut tags = d.read_directory_tags(&dir);
            date_time_original = text(tags.find_tag(Tag::Unknown(0x9003)).unwrap());
            exposure_time = match tags.find_tag(Tag::Unknown(0x829A)).unwrap() {
                Some(Value::Rational(n, d)) => Some((n, d)),
                _ => None,
            };
            pixel_x_dimension = tags.find_tag(Tag::Unknown(0xA002)).unwrap().is_some();
        }
        PhotoTags {
            make,
            model,
            date_time_original,
            exposure_time,
            orientation,
            pixel_x_dimension,
        }
    }

    /// A big-endian chunk (the byte order is swapped on reading on a little-endian machine):
    /// IFD0 with Make, Model, Orientation, ImageWidth and the Exif pointer; the Exif directory
    /// with DateTimeOriginal, ExposureTime (a rational) and PixelXDimension.
    pub(crate) fn chunk() -> Vec<u8> {
        let mut c = b"MM\0\x2a\0\0\0\x08".to_vec();
        // IFD0 at 8: 5 entries (2 + 60 + 4 bytes), its values from 74.
        let entry = |c: &mut Vec<u8>, tag: u16, ty: u16, n: u32, value: [u8; 4]| {
            c.extend(tag.to_be_bytes());
            c.extend(ty.to_be_bytes());
            c.extend(n.to_be_bytes());
            c.extend(value);
        };
        c.extend(5u16.to_be_bytes());
        entry(&mut c, 0x0100, 3, 1, [0, 40, 0, 0]); // ImageWidth 40: not carried
        entry(&mut c, 0x010F, 2, 6, 74u32.to_be_bytes()); // Make
        entry(&mut c, 0x0110, 2, 3, *b"X1\0\0"); // Model, inline
        entry(&mut c, 0x0112, 3, 1, [0, 6, 0, 0]); // Orientation 6: not carried
        entry(&mut c, 0x8769, 4, 1, 80u32.to_be_bytes()); // ExifIFD
        c.extend(0u32.to_be_bytes());
        assert_eq!(c.len(), 74);
        c.extend(b"Acme\0\0");
        // The Exif IFD at 80: 3 entries (2 + 36 + 4), values from 122.
        c.extend(3u16.to_be_bytes());
        entry(&mut c, 0x829A, 5, 1, 122u32.to_be_bytes()); // ExposureTime
        entry(&mut c, 0x9003, 2, 20, 130u32.to_be_bytes()); // DateTimeOriginal
        entry(&mut c, 0xA002, 4, 1, 40u32.to_be_bytes()); // PixelXDimension: not carried
        c.extend(0u32.to_be_bytes());
        assert_eq!(c.len(), 122);
        c.extend(1u32.to_be_bytes());
        c.extend(250u32.to_be_bytes());
        c.extend(b"2024:05:06 07:08:09\0");
        c
    }

    #[test]
    fn a_chunk_keeps_the_photo_tags_and_drops_orientation_and_layout() {
        let e = TiffExif::parse(&chunk()).unwrap();
        let tags = |v: &[RawEntry]| v.iter().map(|e| e.tag).collect::<Vec<_>>();
        assert_eq!(tags(&e.main), [0x010F, 0x0110]);
        assert_eq!(e.main[0].bytes, b"Acme\0\0");
        assert_eq!(tags(&e.exif), [0x829A, 0x9003]);
        // The rational in this machine's byte order: 1/250.
        let rational = [1u32, 250].map(u32::to_ne_bytes).concat();
        assert_eq!(e.exif[0].bytes, rational);
        assert!(e.gps.is_empty());
        // With JPEG's prefix, the same.
        let mut prefixed = b"Exif\0\0".to_vec();
        prefixed.extend(chunk());
        assert_eq!(TiffExif::parse(&prefixed).unwrap().exif, e.exif);
    }

    /// A TIFF written whole carries the photo's tags where a reader looks for them (Make and
    /// Model in the image's directory, DateTimeOriginal and ExposureTime in its Exif
    /// directory), the Orientation and the old pixel width left out; without EXIF, none.
    #[test]
    fn a_whole_tiff_carries_the_photo_tags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tiff");
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(5, 3, image::Rgb([1, 2, 3])));
        let meta = Metadata {
            icc: None,
            exif: Some(chunk()),
        };
        let file = std::fs::File::create(&path).unwrap();
        write_whole(std::io::BufWriter::new(file), &img, &meta).unwrap();
        let want = PhotoTags {
            make: Some("Acme".into()),
            model: Some("X1".into()),
            date_time_original: Some("2024:05:06 07:08:09".into()),
            exposure_time: Some((1, 250)),
            orientation: false,
            pixel_x_dimension: false,
        };
        assert_eq!(photo_tags(&path), want);
        assert_eq!(image::open(&path).unwrap().to_rgb8(), img.to_rgb8());
        let file = std::fs::File::create(&path).unwrap();
        write_whole(std::io::BufWriter::new(file), &img, &Metadata::default()).unwrap();
        let none = photo_tags(&path);
        assert!(none.make.is_none() && none.date_time_original.is_none());
    }

    /// Cut or lying chunks read as nothing (or as what fits), never a panic.
    #[test]
    fn cut_or_lying_chunks_are_refused_without_panic() {
        let c = chunk();
        assert!(TiffExif::parse(b"").is_none());
        assert!(TiffExif::parse(b"JUNKJUNKJUNK").is_none());
        for cut in 0..c.len() {
            let _ = TiffExif::parse(&c[..cut]);
        }
        // IFD0 pointing past the end; a count that runs off the chunk.
        let mut far = c.clone();
        far[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(TiffExif::parse(&far).is_none());
        let mut many = c.clone();
        many[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(TiffExif::parse(&many).is_none());
        // An Exif pointer past the end: the main tags are kept, the directory left out.
        let mut lost = c;
        lost[8 + 2 + 12 * 4 + 8..8 + 2 + 12 * 4 + 12].copy_from_slice(&9999u32.to_be_bytes());
        let e = TiffExif::parse(&lost).unwrap();
        assert_eq!(e.main.len(), 2);
        assert!(e.exif.is_empty());
    }
}
