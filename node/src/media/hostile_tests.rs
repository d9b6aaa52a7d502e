//! Crafted files against each walker and against the whole media step: every
//! one is refused (or read harmlessly) from its headers, with checked
//! arithmetic and bounded work, never a panic, a loop or a giant allocation.
//! The files are built by [`super::crafted`]; none is stored.

use std::time::{Duration, Instant};

use super::crafted::*;
use super::fuzz_tests::peak_alloc_during;
use super::*;

/// Generous: each of these files is refused from a few KiB of headers, in
/// microseconds; this only catches a loop or a decode that should not happen.
const PER_FILE: Duration = Duration::from_secs(10);

fn code<T>(result: &Result<T, MediaError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// `analyze` refuses `bytes` within [`PER_FILE`], allocating at most `max_alloc` bytes.
fn refused(name: &str, bytes: &[u8], max_alloc: usize) -> MediaError {
    let started = Instant::now();
    let (result, peak) = peak_alloc_during(|| analyze(bytes));
    let took = started.elapsed();
    assert!(took < PER_FILE, "{name}: took {took:?}");
    assert!(
        peak <= max_alloc,
        "{name}: allocated {peak} bytes, more than {max_alloc}"
    );
    match result {
        Ok(a) => panic!("{name}: a hostile file was analysed: {:?}", a.meta),
        Err(e) => e,
    }
}

#[test]
fn jpeg_segment_lengths_cannot_loop_or_overrun() {
    // Length 0 and 1 are impossible (the length counts its own two bytes).
    for len in [0u8, 1] {
        let bytes = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, len, 0, 0, 0, 0];
        let r = container::scan_jpeg(&bytes);
        assert_eq!(code(&r), "corrupt-data", "length {len}");
    }
    // A segment running past the end, at every cut of a real header.
    let jpeg = jpeg_with(&[jpeg_app1_exif(&tiff_self_loop()), jpeg_sof(16, 16)]);
    for cut in 0..jpeg.len() - 2 {
        let r = read_meta(&jpeg[..cut]);
        assert!(r.is_err(), "cut at {cut}: {r:?}");
    }
    // 4 MiB of fill bytes: one linear pass.
    let mut fill = vec![0xFF, 0xD8];
    fill.extend(std::iter::repeat_n(0xFF, 4 << 20));
    let (r, peak) = peak_alloc_during(|| read_meta(&fill));
    assert_eq!(code(&r), "truncated");
    assert!(peak < 64 << 10, "{peak}");
}

#[test]
fn jpeg_and_png_declaring_65535_squared_are_refused_from_the_header() {
    for (name, bytes) in [
        ("jpeg", jpeg_with(&[jpeg_sof(65535, 65535)])),
        (
            "png",
            png_with(
                65535,
                65535,
                8,
                6,
                &[png_chunk(b"IDAT", &zlib_stored_zeros(64))],
            ),
        ),
        (
            "png 100000²",
            png_with(
                100_000,
                100_000,
                8,
                6,
                &[png_chunk(b"IDAT", &zlib_stored_zeros(64))],
            ),
        ),
    ] {
        let e = refused(name, &bytes, 1 << 20);
        assert_eq!(e.code(), "dimensions-too-large", "{name}: {e}");
    }
}

#[test]
fn a_png_whose_decoded_pixels_exceed_the_memory_limit_is_refused() {
    // 225 MP is under MAX_PIXELS, but as 16-bit RGBA it is 1.8 GB.
    let bytes = png_with(
        15000,
        15000,
        16,
        6,
        &[png_chunk(b"IDAT", &zlib_stored_zeros(64))],
    );
    let e = refused("png rgba16", &bytes, 64 << 20);
    assert_eq!(e.code(), "dimensions-too-large", "{e}");
    // The same size as 8-bit grey (225 MB) is within both limits: it is refused
    // only because its data is missing, after a decode of bounded size.
    let grey = png_with(
        15000,
        15000,
        8,
        0,
        &[png_chunk(b"IDAT", &zlib_stored_zeros(64))],
    );
    let e = refused("png grey", &grey, MAX_ALLOC as usize + (64 << 20));
    assert_ne!(e.code(), "dimensions-too-large", "{e}");
}

#[test]
fn a_gif_frame_larger_than_its_screen_is_checked_before_decoding() {
    let bytes = gif_with_frame((1, 1), (20000, 20000));
    let e = refused("gif", &bytes, 1 << 20);
    assert_eq!(e.code(), "dimensions-too-large", "{e}");
    // A frame inside the limits reads as before.
    let small = gif_with_frame((4, 4), (4, 4));
    assert_eq!(code(&read_meta(&small)), "ok");
}

#[test]
fn png_and_webp_chunk_lengths_cannot_overrun() {
    let png = png_with(8, 8, 8, 2, &[png_chunk_with_len(u32::MAX, b"tEXt", b"x")]);
    assert_eq!(code(&read_meta(&png)), "ok", "the header is still readable");
    assert!(analyze(&png).is_err());
    let mut webp = b"RIFF\0\0\0\0WEBP".to_vec();
    for kind in [b"VP8X", b"EXIF", b"ICCP"] {
        webp.extend_from_slice(kind);
        webp.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    assert!(read_meta(&webp).is_err());
}

#[test]
fn isobmff_box_sizes_are_checked() {
    const F: ImageFormatKind = ImageFormatKind::Heic;
    let ftyp = heic_ftyp();
    let with = |tail: Vec<u8>| {
        let mut b = ftyp.clone();
        b.extend_from_slice(&tail);
        b
    };
    // size 0: to the end of the file.
    assert_eq!(
        container::check_boxes(F, &with(bmff_box_sized(0, b"mdat", &[0; 8]))),
        Ok(())
    );
    // size 2..7 and a 64-bit size under 16: smaller than the box's own header.
    for size in 2..8 {
        let r = container::check_boxes(F, &with(bmff_box_sized(size, b"free", &[0; 8])));
        assert_eq!(code(&r), "corrupt-data", "size {size}");
    }
    let r = container::check_boxes(F, &with(bmff_large_box(8, b"meta", &[])));
    assert_eq!(code(&r), "corrupt-data");
    // 64-bit sizes that overflow `pos + size`: u64::MAX, and one that wraps to byte 0.
    for size in [u64::MAX, (ftyp.len() as u64).wrapping_neg(), 1 << 63] {
        let r = container::check_boxes(F, &with(bmff_large_box(size, b"mdat", &[0; 32])));
        assert_eq!(code(&r), "truncated", "size {size}");
    }
    // A box claiming more than is left.
    let r = container::check_boxes(F, &with(bmff_box_sized(1 << 20, b"meta", &[0; 64])));
    assert_eq!(code(&r), "truncated");
    // A million empty boxes: one step each, no allocation per box.
    let mut many = ftyp.clone();
    for _ in 0..1_000_000 {
        many.extend_from_slice(&bmff_box(b"free", &[]));
    }
    let (r, peak) = peak_alloc_during(|| container::check_boxes(F, &many));
    assert_eq!(r, Ok(()));
    assert!(peak < 4 << 10, "{peak}");
}

#[test]
fn sniffing_a_giant_ftyp_allocates_nothing() {
    // An ftyp box that claims to span a 16 MiB file of brands.
    let mut bytes = vec![0xFF, 0xFF, 0xFF, 0xFF];
    bytes.extend_from_slice(b"ftypxxxx\0\0\0\0");
    bytes.resize(16 << 20, b'z');
    let (r, peak) = peak_alloc_during(|| sniff(&bytes));
    assert_eq!(r, Err(MediaError::NotAnImage));
    assert!(peak < 4 << 10, "sniffing allocated {peak} bytes");
}

#[test]
fn exif_cycles_and_huge_counts_cost_no_more_than_the_file() {
    // An IFD (and its Exif pointer) pointing at itself.
    let fields = exif::parse(&tiff_self_loop());
    assert_eq!(fields.orientation, Some(6));
    // 65535 entries each claiming 4 GiB of values.
    let tiff = tiff_many_entries(65535, 0x3FFF_FFFF);
    let (fields, peak) = peak_alloc_during(|| exif::parse(&tiff));
    assert_eq!(fields, exif::ExifFields::default());
    assert!(peak < 16 * tiff.len(), "{peak} for {} bytes", tiff.len());
    // 65535 entries whose values all fit, all pointing at the same bytes.
    let tiff = tiff_many_entries(65535, 4);
    let (_, peak) = peak_alloc_during(|| exif::parse(&tiff));
    assert!(peak < 16 * tiff.len(), "{peak} for {} bytes", tiff.len());
}

#[test]
fn every_crafted_file_is_refused_quickly_and_cheaply() {
    let mut seen = Vec::new();
    for file in hostile_set() {
        // What a file may allocate: a copy of itself for the EXIF reader plus a
        // little, or (for libheif, whose allocations are not counted here) nothing.
        let bound = 4 * file.bytes.len() + (4 << 20);
        if file.name.ends_with(".heic") && !cfg!(feature = "heif") {
            continue;
        }
        let started = Instant::now();
        let e = refused(file.name, &file.bytes, bound);
        seen.push(format!(
            "{}: {} in {:?} ({})",
            file.name,
            e.code(),
            started.elapsed(),
            file.what
        ));
        assert!(!e.to_string().is_empty());
    }
    eprintln!("{}", seen.join("\n"));
}

#[test]
fn the_jpeg_decoder_cannot_go_past_the_size_the_header_walk_checked() {
    // A real 128×128 JPEG: decoding it as if the header had said 64×64 must fail
    // in the decoder, before it allocates for the larger frame.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/corpus/orientation/hopper_orientation_1.jpg"))
        .find(|p| p.is_file());
    let Some(path) = corpus.or_else(|| {
        std::env::var_os("KITH_CORPUS")
            .map(|d| std::path::PathBuf::from(d).join("orientation/hopper_orientation_1.jpg"))
    }) else {
        panic!("the photo corpus was not found (set KITH_CORPUS)");
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(render::decode(ImageFormatKind::Jpeg, &bytes, 128, 128).is_ok());
    let r = render::decode(ImageFormatKind::Jpeg, &bytes, 64, 64);
    assert!(r.is_err(), "decoded past the checked size: {r:?}");
}
