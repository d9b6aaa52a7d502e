//! Tests against the shared photo corpus (`shared/corpus`, see its README and
//! MANIFEST.tsv). A missing corpus fails the tests: it never passes silently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

/// `KITH_CORPUS` if set, else the first `shared/corpus` found in
/// `CARGO_MANIFEST_DIR` or one of its ancestors (so a repo clone next to
/// `shared/` finds it too).
fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_CORPUS") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("MANIFEST.tsv").is_file(),
            "KITH_CORPUS={} has no MANIFEST.tsv",
            dir.display()
        );
        return dir;
    }
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let candidate = dir.join("shared").join("corpus");
        if candidate.join("MANIFEST.tsv").is_file() {
            return candidate;
        }
    }
    panic!(
        "the photo corpus was not found: set KITH_CORPUS to the corpus directory, or put \
         `shared/corpus` (with MANIFEST.tsv) in {} or one of its ancestors",
        start.display()
    );
}

type Row = HashMap<String, String>;

fn manifest(corpus: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(corpus.join("MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("cannot read MANIFEST.tsv: {e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let rows: Vec<Row> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            header
                .iter()
                .zip(line.split('\t').chain(std::iter::repeat("")))
                .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    assert!(rows.len() > 50, "MANIFEST.tsv has only {} rows", rows.len());
    rows
}

fn read(corpus: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(corpus.join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn opt(row: &Row, key: &str) -> Option<String> {
    row.get(key).filter(|v| !v.is_empty()).cloned()
}

fn num(row: &Row, key: &str) -> u32 {
    row[key]
        .parse()
        .unwrap_or_else(|e| panic!("{}: bad {key}: {e}", row["path"]))
}

fn heif_enabled() -> bool {
    cfg!(feature = "heif")
}

/// Expected rendition size: long edge `edge`, never upscaled.
fn expected_fit(w: u32, h: u32, edge: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= edge {
        return (w, h);
    }
    let s = f64::from(edge) / f64::from(long);
    let r = |v: u32| ((f64::from(v) * s).round() as u32).max(1);
    (r(w), r(h))
}

fn decode_rendition(r: &Rendition) -> image::RgbImage {
    let img = image::load_from_memory_with_format(&r.bytes, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("rendition is not a JPEG: {e}"));
    assert_eq!((img.width(), img.height()), (r.width, r.height));
    img.to_rgb8()
}

/// Checks one `ok`/`duplicate-of:` row; returns the mismatches.
fn check_ok_row(row: &Row, a: &Analyzed) -> Vec<String> {
    let mut bad = Vec::new();
    let m = &a.meta;
    let mut expect = |what: &str, ok: bool, got: String, want: String| {
        if !ok {
            bad.push(format!("{what}: got {got}, want {want}"));
        }
    };
    let want_format = match row["format"].as_str() {
        "mpo" => "jpeg",
        f => f,
    };
    expect(
        "format",
        m.format.as_str() == want_format,
        m.format.as_str().into(),
        want_format.into(),
    );
    expect(
        "mime",
        m.mime == m.format.mime(),
        m.mime.into(),
        m.format.mime().into(),
    );
    let size = (num(row, "width"), num(row, "height"));
    expect(
        "size",
        (m.width, m.height) == size,
        format!("{:?}", (m.width, m.height)),
        format!("{size:?}"),
    );
    let display = (num(row, "display_width"), num(row, "display_height"));
    expect(
        "display size",
        (m.display_width, m.display_height) == display,
        format!("{:?}", (m.display_width, m.display_height)),
        format!("{display:?}"),
    );
    expect(
        "make",
        m.make == opt(row, "make"),
        format!("{:?}", m.make),
        format!("{:?}", opt(row, "make")),
    );
    expect(
        "model",
        m.model == opt(row, "model"),
        format!("{:?}", m.model),
        format!("{:?}", opt(row, "model")),
    );
    let taken = opt(row, "datetime_original").map(|d| {
        let d = d.replacen(':', "-", 2);
        d.replacen(' ', "T", 1)
    });
    expect(
        "taken_at",
        m.taken_at == taken,
        format!("{:?}", m.taken_at),
        format!("{taken:?}"),
    );
    let orientation = opt(row, "orientation").map(|o| o.parse::<u16>().unwrap_or(0));
    expect(
        "orientation",
        m.orientation == orientation,
        format!("{:?}", m.orientation),
        format!("{orientation:?}"),
    );
    let gps = match (opt(row, "gps_lat"), opt(row, "gps_lon")) {
        (Some(lat), Some(lon)) => Some((
            lat.parse::<f64>().unwrap_or(f64::NAN),
            lon.parse::<f64>().unwrap_or(f64::NAN),
        )),
        _ => None,
    };
    let gps_ok = match (m.gps, gps) {
        (None, None) => true,
        (Some((a, b)), Some((c, d))) => (a - c).abs() < 1e-6 && (b - d).abs() < 1e-6,
        _ => false,
    };
    expect("gps", gps_ok, format!("{:?}", m.gps), format!("{gps:?}"));

    let want_preview = expected_fit(display.0, display.1, PREVIEW_EDGE);
    let want_thumb = expected_fit(want_preview.0, want_preview.1, THUMBNAIL_EDGE);
    let got_preview = (a.preview.width, a.preview.height);
    let got_thumb = (a.thumbnail.width, a.thumbnail.height);
    expect(
        "preview size",
        got_preview == want_preview,
        format!("{got_preview:?}"),
        format!("{want_preview:?}"),
    );
    expect(
        "thumbnail size",
        got_thumb == want_thumb,
        format!("{got_thumb:?}"),
        format!("{want_thumb:?}"),
    );
    decode_rendition(&a.preview);
    decode_rendition(&a.thumbnail);
    bad
}

#[test]
fn every_manifest_row_meets_its_expectation() {
    let corpus = corpus_dir();
    let rows = manifest(&corpus);
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in &rows {
        let path = row["path"].as_str();
        let bytes = read(&corpus, path);
        let expect = row["expect"].as_str();
        let is_heif = matches!(row["format"].as_str(), "heic" | "heif");
        let result = analyze(&bytes);
        if is_heif && !heif_enabled() {
            match &result {
                Err(e) if e.code() == "unsupported-format" => {}
                other => failures.push(format!(
                    "{path}: without the heif feature want unsupported-format, got {other:?}"
                )),
            }
            continue;
        }
        if let Some(code) = expect.strip_prefix("reject:") {
            match &result {
                Err(e) if e.code() == code => {
                    assert!(!e.to_string().is_empty());
                }
                Err(e) => failures.push(format!("{path}: want {code}, got {} ({e})", e.code())),
                Ok(a) => failures.push(format!(
                    "{path}: want {code}, but it analyzed: {:?}",
                    a.meta
                )),
            }
        } else if expect == "ok" || expect.starts_with("duplicate-of:") {
            match &result {
                Ok(a) => {
                    for problem in check_ok_row(row, a) {
                        failures.push(format!("{path}: {problem}"));
                    }
                    match read_meta(&bytes) {
                        Ok(meta) if meta == a.meta => {}
                        other => failures
                            .push(format!("{path}: read_meta differs from analyze: {other:?}")),
                    }
                }
                Err(e) => failures.push(format!("{path}: want ok, got {} ({e})", e.code())),
            }
            if let Some(original) = expect.strip_prefix("duplicate-of:") {
                let original = analyze(&read(&corpus, original)).map(|a| a.meta);
                if original.as_ref().ok() != result.as_ref().ok().map(|a| &a.meta) {
                    failures.push(format!("{path}: meta differs from its original"));
                }
            }
        } else {
            failures.push(format!("{path}: unknown expectation {expect:?}"));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus files do not meet MANIFEST.tsv:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Mean absolute difference per channel between two same-size images.
fn mean_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn all_eight_orientations_render_upright() {
    let corpus = corpus_dir();
    let reference = analyze(&read(&corpus, "orientation/hopper_orientation_1.jpg"))
        .unwrap_or_else(|e| panic!("{e}"));
    let reference = decode_rendition(&reference.preview);
    let mut report = Vec::new();
    for ext in ["jpg", "webp"] {
        for n in 2..=8u16 {
            let rel = format!("orientation/hopper_orientation_{n}.{ext}");
            let a = analyze(&read(&corpus, &rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(a.meta.orientation, Some(n), "{rel}");
            let upright = mean_diff(&decode_rendition(&a.preview), &reference);
            // Sanity: the stored (unturned) pixels are clearly different.
            let stored = render::to_rgb8(
                image::load_from_memory(&read(&corpus, &rel)).unwrap_or_else(|e| panic!("{e}")),
            );
            let stored = image::RgbImage::from_raw(stored.width, stored.height, stored.data)
                .unwrap_or_else(|| panic!("bad buffer"));
            let unturned = mean_diff(&stored, &reference);
            report.push(format!(
                "{rel}: upright diff {upright:.1}, unturned diff {unturned:.1}"
            ));
            assert!(
                upright < 6.0 && unturned > 3.0 * upright,
                "{rel} is not upright:\n{}",
                report.join("\n")
            );
        }
    }
}

#[test]
fn rotated_jpegs_match_the_original_photo() {
    let corpus = corpus_dir();
    let original =
        analyze(&read(&corpus, "camera/olympus-e-m1_kite.jpg")).unwrap_or_else(|e| panic!("{e}"));
    let reference = decode_rendition(&original.thumbnail);
    for n in [3, 6, 8] {
        let rel = format!("orientation/derived/olympus-e-m1_kite_orient{n}.jpg");
        let a = analyze(&read(&corpus, &rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!((a.preview.width, a.preview.height), (2048, 1280), "{rel}");
        let diff = mean_diff(&decode_rendition(&a.thumbnail), &reference);
        assert!(
            diff < 3.0,
            "{rel}: thumbnail differs from the upright original by {diff:.2}"
        );
    }
}

#[test]
fn heif_applies_irot_and_ignores_exif_orientation() {
    if !heif_enabled() {
        return;
    }
    let corpus = corpus_dir();
    let a = analyze(&read(
        &corpus,
        "formats/heic/iphone-8-plus_arrow_orient6.heic",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.meta.orientation, Some(6));
    assert_eq!((a.meta.width, a.meta.height), (4032, 3024));
    assert_eq!((a.meta.display_width, a.meta.display_height), (3024, 4032));
    assert_eq!((a.preview.width, a.preview.height), (1536, 2048));
    assert_eq!((a.thumbnail.width, a.thumbnail.height), (240, 320));
}

#[test]
fn renditions_have_the_right_sizes() {
    let corpus = corpus_dir();
    for (rel, preview, thumb) in [
        ("large/kleiber_6028x3391.jpg", (2048, 1152), (320, 180)),
        (
            "large/wine_2560x3837_portrait.jpg",
            (1366, 2048),
            (213, 320),
        ),
        ("camera/olympus-e-m1_kite_400px.jpg", (400, 250), (320, 200)),
        ("camera/makernotes/sony-dsc-rx1r.jpg", (80, 80), (80, 80)),
        (
            "camera/xiaomi-redmi-note-9s_orient6_empty-gps.jpg",
            (10, 10),
            (10, 10),
        ),
        ("formats/gif/chi_animated.gif", (320, 240), (320, 240)),
        (
            "formats/webp/seeding_5312x2988_q80.webp",
            (2048, 1152),
            (320, 180),
        ),
    ] {
        let a = analyze(&read(&corpus, rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(
            (a.preview.width, a.preview.height),
            preview,
            "{rel} preview"
        );
        assert_eq!(
            (a.thumbnail.width, a.thumbnail.height),
            thumb,
            "{rel} thumbnail"
        );
        let p = decode_rendition(&a.preview);
        let t = decode_rendition(&a.thumbnail);
        assert!(a.preview.bytes.len() > 100 && a.thumbnail.bytes.len() <= a.preview.bytes.len());
        // Not a flat grey: the renditions carry the picture.
        let spread = |img: &image::RgbImage| {
            let (lo, hi) = img
                .as_raw()
                .iter()
                .fold((255u8, 0u8), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            hi - lo
        };
        // (The 10×10 phone file is nearly flat.)
        if preview.0 > 16 {
            assert!(
                spread(&p) > 50 && spread(&t) > 50,
                "{rel}: renditions look blank"
            );
        }
    }
}

#[test]
fn sniffing_ignores_names_and_rejects_non_images() {
    assert_eq!(analyze(&[]).map(|_| ()), Err(MediaError::Empty));
    assert_eq!(
        read_meta(b"hello, this is text").map(|_| ()),
        Err(MediaError::NotAnImage)
    );
    let mp4 = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom\0\0\0\x08free";
    assert_eq!(read_meta(mp4).map(|_| ()), Err(MediaError::NotAnImage));
    let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf\0\0\0\x08free";
    assert_eq!(
        read_meta(avif).map_err(|e| e.code()).map(|_| ()),
        Err("unsupported-format")
    );
    for e in [
        MediaError::Empty,
        MediaError::NotAnImage,
        MediaError::truncated(ImageFormatKind::Jpeg, "x"),
        MediaError::corrupt(ImageFormatKind::Png, "x"),
        MediaError::TooLarge {
            width: 100_000,
            height: 100_000,
        },
        MediaError::Unsupported { format: "AVIF" },
    ] {
        let text = e.to_string();
        assert!(text.len() > 40 && !e.code().is_empty(), "{text}");
    }
    let json = serde_json::to_string(&ImageFormatKind::Heic).unwrap_or_default();
    assert_eq!(json, "\"heic\"");
}

/// A tiny deterministic PRNG (xorshift64*), so the mutation test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_files_never_panic() {
    let corpus = corpus_dir();
    let mut files = vec![
        "orientation/hopper_orientation_6.jpg",
        "orientation/hopper_orientation_6.webp",
        "camera/makernotes/canon-powershot-g1x-mk2.jpg",
        "camera/xiaomi-redmi-note-9s_orient6_empty-gps.jpg",
        "formats/png/hopper.png",
        "formats/gif/hopper.gif",
        "formats/tiff/hopper.tif",
        "formats/webp/canon-powershot-s40_flower.webp",
        "camera/canon-powershot-s40_flower.jpg",
        "formats/webp/hopper.webp",
    ];
    if heif_enabled() {
        files.push("formats/heic/iphone-xs_empty-icc_gps.heic");
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut outcomes: HashMap<&'static str, usize> = HashMap::new();
    for rel in files {
        let original = read(&corpus, rel);
        let rounds = if rel.ends_with(".heic") { 40 } else { 150 };
        for round in 0..rounds {
            let mut bytes = original.clone();
            match round % 3 {
                0 => bytes.truncate(rng.below(bytes.len())),
                1 => {
                    for _ in 0..1 + rng.below(8) {
                        let i = rng.below(bytes.len());
                        bytes[i] = rng.next() as u8;
                    }
                }
                _ => {
                    // Damage the header area, where sizes and offsets live.
                    let i = rng.below(bytes.len().min(512));
                    bytes[i] = [0x00, 0xFF, 0x7F, 0x80][rng.below(4)];
                }
            }
            let outcome = std::panic::catch_unwind(|| {
                let meta = read_meta(&bytes).map(|_| ()).map_err(|e| e.code());
                let full = analyze(&bytes).map(|_| ()).map_err(|e| e.code());
                (meta, full)
            });
            match outcome {
                Ok((_, full)) => *outcomes.entry(full.err().unwrap_or("ok")).or_default() += 1,
                Err(_) => panic!("{rel}: round {round} panicked"),
            }
        }
    }
    eprintln!("mutation outcomes: {outcomes:?}");
}
