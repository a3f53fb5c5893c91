//! Inputs a user never looked at, names that try to leave the output folder, and a manifest that
//! must not be misled: each built here at test time (no binary fixtures), run through the CLI on
//! a tiny model (a pixel shuffle, 2x) with tiny images, so these tests stay cheap on lavapipe.

#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::{Path, PathBuf};

use common::batchwise;
use image::GenericImageView as _;
use predicates::prelude::*;

/// The tiny 2x model the tests run.
fn model() -> PathBuf {
    common::fixture("user/pixel_shuffle_2x.onnx")
}

/// `batchwise run --json -m MODEL` with `args`, from `cwd`: the exit code and the JSON.
fn run_json(cwd: &Path, args: &[&std::ffi::OsStr]) -> (i32, serde_json::Value) {
    let out = batchwise()
        .current_dir(cwd)
        .args(["run", "--json", "-b", "4", "-m"])
        .arg(model())
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: exit {:?}, stderr {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A small RGB image, its pixels depending on `seed`.
fn small(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(12, 10, |x, y| {
        image::Rgb([
            (x as u8 * 20).wrapping_add(seed),
            y as u8 * 25,
            seed.wrapping_mul(7),
        ])
    })
}

fn item<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["input"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no item {name:?} in {json:#}"))
}

/// Every file under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    png.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    png.extend(&body);
    png.extend(crc32(&body).to_be_bytes());
}

/// A PNG whose header claims `w` x `h` pixels and holds none.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    png
}

/// A palette PNG (colour type 3) of `w` x `h`, written by hand: the image crate writes none.
fn palette_png(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 3, 0, 0, 0]);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        raw.extend((0..w).map(|x| ((x + y) % 3) as u8));
    }
    // zlib with one stored (uncompressed) deflate block.
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(&raw);
    let (a, b) = raw.iter().fold((1u32, 0u32), |(a, b), &x| {
        let a = (a + x as u32) % 65521;
        (a, (b + a) % 65521)
    });
    z.extend(((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"PLTE", &[255, 0, 0, 0, 255, 0, 0, 0, 255]);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn encoded(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Whether permissions bind this process (not root): unreadable files can be made.
fn permissions_bind(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let probe = dir.join("probe");
    std::fs::write(&probe, b"x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let binds = std::fs::read(&probe).is_err();
    std::fs::remove_file(&probe).unwrap();
    binds
}

/// The bad-input corpus, in one run: each bad item fails (or is skipped) alone with a clear
/// reason naming it, the good ones are done, the run finishes (exit 2, no panic, a FIFO does not
/// hang it) and leaves no temporary file.
#[test]
fn a_folder_of_bad_inputs_finishes_with_a_reason_for_each() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("x.png")).unwrap();
    let rgb = image::DynamicImage::ImageRgb8(small(1));
    rgb.save(inputs.join("good.png")).unwrap();
    // Cut in its entropy-coded data, past the headers: the decoder alone would fill the rest.
    let noisy = image::RgbImage::from_fn(40, 32, |x, y| {
        image::Rgb([
            ((x * 37) ^ (y * 11)) as u8,
            (x * y) as u8,
            (x + y * 5) as u8,
        ])
    });
    let jpeg = encoded(&noisy.into(), image::ImageFormat::Jpeg);
    std::fs::write(inputs.join("trunc.jpg"), &jpeg[..jpeg.len() - 40]).unwrap();
    let png = encoded(&rgb, image::ImageFormat::Png);
    std::fs::write(inputs.join("trunc.png"), &png[..png.len() - 20]).unwrap();
    std::fs::write(inputs.join("empty.png"), b"").unwrap();
    std::fs::write(inputs.join("text.jpg"), b"hello, not a photo").unwrap();
    std::fs::write(inputs.join("huge.png"), png_header_only(60000, 60000)).unwrap();
    // Within the side limit, over a 1 MiB --max-memory: its pixels, read and held as RGBA (the
    // PNG output is written by rows, not held).
    image::RgbImage::new(400, 400)
        .save(inputs.join("big.png"))
        .unwrap();
    small(2).save(inputs.join("x.png/inner.png")).unwrap();
    std::os::unix::fs::symlink("nowhere.png", inputs.join("link.png")).unwrap();
    std::os::unix::fs::symlink("..", inputs.join("x.png/loop")).unwrap();
    mkfifo(&inputs.join("fifo.png"));
    let grey_alpha =
        image::GrayAlphaImage::from_fn(9, 7, |x, y| image::LumaA([x as u8 * 9, y as u8 * 30]));
    grey_alpha.save(inputs.join("grey-alpha.png")).unwrap();
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(8, 6, |x, y| {
        image::Rgb([x as u16 * 8000, y as u16 * 9000, 300])
    });
    deep.save(inputs.join("deep.png")).unwrap();
    std::fs::write(inputs.join("palette.png"), palette_png(10, 6)).unwrap();
    image::DynamicImage::ImageRgb8(small(5))
        .save(inputs.join("plain.bmp"))
        .unwrap();
    // An animated GIF of two frames: the first is read.
    let frames = [small(6), small(200)]
        .map(|f| image::Frame::new(image::DynamicImage::ImageRgb8(f).to_rgba8()));
    let mut gif = Vec::new();
    image::codecs::gif::GifEncoder::new(&mut gif)
        .encode_frames(frames)
        .unwrap();
    std::fs::write(inputs.join("animated.gif"), &gif).unwrap();
    image::load_from_memory(&gif)
        .unwrap()
        .save(inputs.join("first-frame.png"))
        .unwrap();
    for name in ["with space.png", "new\nline.png", "-dash.png", "dup.png"] {
        small(3).save(inputs.join(name)).unwrap();
    }
    small(4).save(inputs.join("dup.jpg")).unwrap();
    let not_utf8 = inputs.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    std::fs::write(&not_utf8, &png).unwrap();
    // A FIFO named on the command line: refused without being opened.
    let named_fifo = dir.path().join("named-fifo.png");
    mkfifo(&named_fifo);
    let out = dir.path().join("out");

    let (code, json) = run_json(
        dir.path(),
        &[
            os("--max-memory"),
            os("1"),
            os("-o"),
            out.as_os_str(),
            inputs.as_os_str(),
            named_fifo.as_os_str(),
        ],
    );
    assert_eq!(code, 3, "{json:#}");
    let failed = |name: &str, says: &str| {
        let i = item(&json, name);
        let error = i["error"].as_str().unwrap_or_default();
        assert_eq!(i["status"], "failed", "{name}: {i}");
        assert!(
            error.contains(name.trim_start_matches('/')) && error.contains(says),
            "{name}: {error}"
        );
        assert!(i["output"].is_null(), "{name}: {i}");
    };
    failed("trunc.jpg", "truncated");
    failed("trunc.png", "truncated");
    failed("empty.png", "empty (0 bytes)");
    failed("text.jpg", "cannot decode");
    failed("huge.png", "larger than batchwise reads");
    failed("big.png", "--max-memory");
    failed("link.png", "nowhere.png, which does not exist");
    failed("named-fifo.png", "not a regular file (a named pipe)");
    let skipped = |name: &str, says: &str| {
        let i = item(&json, name);
        assert_eq!(i["status"], "skipped", "{name}: {i}");
        assert!(i["error"].as_str().unwrap().contains(says), "{name}: {i}");
    };
    skipped("/fifo.png", "not a regular file (a named pipe)");
    skipped("/loop", "loops back");
    let done = [
        "good.png",
        "x.png/inner.png",
        "grey-alpha.png",
        "deep.png",
        "palette.png",
        "plain.bmp",
        "animated.gif",
        "first-frame.png",
        "with space.png",
        "new\nline.png",
        "-dash.png",
        "dup.png",
        "dup.jpg",
        "caf\u{fffd}.png",
    ];
    for name in done {
        let i = item(&json, name);
        assert_eq!(i["status"], "done", "{name}: {i}");
        let output = i["output"].as_str().unwrap();
        assert!(Path::new(output).starts_with(&out), "{output}");
    }
    assert_eq!(json["done"], done.len());
    assert_eq!(json["failed"], 8);
    assert_eq!(json["skipped"], 2);
    // What each done item became: its size at 2x, grey + alpha keeps alpha, 16-bit stays 16-bit,
    // the two `dup`s do not share an output, the name that is not UTF-8 is written.
    let size = |name: &str| image::image_dimensions(out.join(name)).unwrap();
    assert_eq!(size("good.png"), (24, 20));
    assert_eq!(size("palette.png"), (20, 12));
    assert_eq!(size("plain.png"), (24, 20));
    // The GIF's first frame alone: its output is the still first frame's.
    let animated = image::open(out.join("animated.png")).unwrap();
    assert_eq!(animated.dimensions(), (24, 20));
    assert!(animated == image::open(out.join("first-frame.png")).unwrap());
    let dup: Vec<&str> = ["dup.png", "dup.jpg"]
        .iter()
        .map(|n| item(&json, n)["output"].as_str().unwrap())
        .collect();
    assert_ne!(dup[0], dup[1]);
    assert!(
        out.join(std::ffi::OsStr::from_bytes(b"caf\xef\xbf\xbd.png"))
            .is_file()
    );
    let files = tree(&out);
    assert!(
        !files.iter().any(|f| f.ends_with(".partial")),
        "a temporary file was left: {files:?}"
    );
}

/// Unreadable files and sub-folders are reported, not dropped; a read-only output folder stops
/// the job with the reason before anything runs. Root reads everything: there, nothing to show.
#[test]
fn unreadable_inputs_and_a_read_only_output_folder_are_reported() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    if !permissions_bind(dir.path()) {
        eprintln!("skipped: permissions do not bind this user (root)");
        return;
    }
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("locked")).unwrap();
    small(1).save(inputs.join("good.png")).unwrap();
    small(2).save(inputs.join("locked/hidden.png")).unwrap();
    small(3).save(inputs.join("secret.png")).unwrap();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(&inputs.join("locked"), 0o000).unwrap();
    mode(&inputs.join("secret.png"), 0o000).unwrap();
    let out = dir.path().join("out");
    let (code, json) = run_json(dir.path(), &[os("-o"), out.as_os_str(), inputs.as_os_str()]);
    mode(&inputs.join("locked"), 0o755).unwrap();
    assert_eq!(code, 3, "{json:#}");
    assert_eq!(item(&json, "good.png")["status"], "done");
    for name in ["/locked", "secret.png"] {
        let i = item(&json, name);
        assert_eq!(i["status"], "failed", "{i}");
        assert!(
            i["error"].as_str().unwrap().contains("ermission denied"),
            "{i}"
        );
    }

    let read_only = dir.path().join("read-only");
    std::fs::create_dir_all(&read_only).unwrap();
    mode(&read_only, 0o555).unwrap();
    batchwise()
        .args(["run", "-m"])
        .arg(model())
        .arg("-o")
        .arg(&read_only)
        .arg(inputs.join("good.png"))
        .assert()
        .code(1)
        .stderr(
            predicates::str::contains("read-only")
                .and(predicates::str::contains(batchwise::manifest::FILE_NAME)),
        );
}

/// A CMYK JPEG (print workflows, some scanners) decodes to RGB with its colours (the mean within
/// a tenth of the range of the RGB original's; JPEG and CMYK round trips lose a little) and runs
/// as any other image: done, its output the model's 2x.
#[test]
fn a_cmyk_jpeg_is_done() {
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cmyk.jpg");
    std::fs::copy(fixture("images/cmyk-24x16.jpg"), &input).unwrap();
    let limits = batchwise::job::ItemLimits {
        max_bytes: batchwise::job::MAX_DECODE_BYTES,
        scale: 1,
        streamed: false,
        resampled: None,
        kept_area: 0,
    };
    let (decoded, _) = batchwise::job::read_upright(&input, limits).unwrap();
    let decoded = decoded.to_rgb8();
    let original = image::open(fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 24, 16)
        .to_rgb8();
    let mean = |img: &image::RgbImage| {
        img.pixels()
            .map(|p| f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2]))
            .sum::<f64>()
            / (3.0 * f64::from(img.width() * img.height()))
    };
    let (a, b) = (mean(&decoded), mean(&original));
    assert!(
        (a - b).abs() < 25.5,
        "decoded mean {a} vs the original's {b}"
    );
    let out = dir.path().join("out");
    let (code, json) = run_json(dir.path(), &[os("-o"), out.as_os_str(), input.as_os_str()]);
    assert_eq!(code, 0, "{json:#}");
    let written = image::open(out.join("cmyk.png")).unwrap();
    assert_eq!((written.width(), written.height()), (48, 32));
}

/// A full disk: the output folder on a 96 KiB tmpfs (where this machine lets the test mount one;
/// it says so and passes where it cannot). The first outputs fit, the rest fail with the
/// system's "no space" reason; the batch finishes with exit 3 and no partial file is left.
#[test]
fn a_full_disk_fails_the_items_that_do_not_fit_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small");
    std::fs::create_dir_all(&out).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a small tmpfs here (not root?); the full-disk case is not run");
        return;
    }
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for k in 0..8u8 {
        // Noisy pixels: PNG cannot shrink them, so each 2x output is ~25 KiB.
        let img = image::RgbImage::from_fn(60, 44, |x, y| {
            let v = (x * 31 + y * 17 + u32::from(k) * 7).wrapping_mul(2_654_435_761) >> 24;
            image::Rgb([v as u8, (v >> 1) as u8, (v * 3) as u8])
        });
        img.save(inputs.join(format!("{k}.png"))).unwrap();
    }
    let (code, json) = run_json(dir.path(), &[os("-o"), out.as_os_str(), inputs.as_os_str()]);
    let listed: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let _ = std::process::Command::new("umount").arg(&out).status();
    assert_eq!(code, 3, "{json:#}");
    let done = json["done"].as_u64().unwrap();
    let failed = json["failed"].as_u64().unwrap();
    assert!(done >= 1 && failed >= 1 && done + failed == 8, "{json:#}");
    let reasons: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["error"].as_str())
        .collect();
    assert!(
        reasons.iter().all(|r| r.to_lowercase().contains("space")),
        "{reasons:?}"
    );
    assert!(
        !listed.iter().any(|n| n.ends_with(".partial")),
        "{listed:?}"
    );
}
