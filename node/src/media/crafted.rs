//! Hostile files, built byte by byte: what an attacker would hand `kith import`.
//!
//! Shared by the walker tests in this module and the end-to-end test in
//! `tests/tests/hostile_files.rs`, so both refuse the same files. Nothing here
//! reads or writes anything: each function returns the bytes of one file.
//! Sizes are chosen so each file is small (a few KiB to a few MiB) while its
//! headers claim something enormous, looping or impossible.

/// One crafted file: a name (with the extension a user would see) and its bytes.
#[derive(Debug, Clone)]
pub struct Crafted {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// What makes it hostile, for failure messages.
    pub what: &'static str,
}

/// Small real files of every format, as paths in the photo corpus: the fuzzers' mutations
/// start from real headers. Shared by the property harness (`media::fuzz_tests`) and the
/// coverage-guided targets in `tests/fuzz`.
pub const FUZZ_SEEDS: &[&str] = &[
    "orientation/hopper_orientation_6.jpg",
    "camera/makernotes/canon-powershot-g1x-mk2.jpg",
    "camera/xiaomi-redmi-note-9s_orient6_empty-gps.jpg",
    "formats/png/hopper.png",
    "formats/gif/hopper.gif",
    "formats/tiff/hopper.tif",
    "formats/webp/hopper.webp",
    "orientation/hopper_orientation_6.webp",
];

/// A real HEIC is large: the fuzzers see its first [`FUZZ_HEIC_SEED_BYTES`] (all of its boxes
/// but the tail of `mdat`).
pub const FUZZ_HEIC_SEED: &str = "formats/heic/iphone-xs_empty-icc_gps.heic";
pub const FUZZ_HEIC_SEED_BYTES: usize = 64 << 10;

// ---------------------------------------------------------------- JPEG

/// A marker segment: `FF marker`, big-endian length (counting itself), payload.
pub fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A baseline frame header (SOF0) for one 8-bit component.
pub fn jpeg_sof(width: u16, height: u16) -> Vec<u8> {
    let mut payload = vec![8];
    payload.extend_from_slice(&height.to_be_bytes());
    payload.extend_from_slice(&width.to_be_bytes());
    payload.extend_from_slice(&[1, 1, 0x11, 0]);
    jpeg_segment(0xC0, &payload)
}

/// A scan header (SOS) for the one component of [`jpeg_sof`].
pub fn jpeg_sos() -> Vec<u8> {
    jpeg_segment(0xDA, &[1, 1, 0x00, 0, 63, 0])
}

/// SOI, the given segments, SOS, a little entropy data, EOI.
pub fn jpeg_with(segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    for s in segments {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&jpeg_sos());
    out.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// An APP1 segment carrying `tiff` as EXIF.
pub fn jpeg_app1_exif(tiff: &[u8]) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(tiff);
    jpeg_segment(0xE1, &payload)
}

// ---------------------------------------------------------------- PNG

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk with a correct CRC (`len` is the length field, normally `data.len()`).
pub fn png_chunk_with_len(len: u32, kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
    out
}

pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    png_chunk_with_len(u32::try_from(data.len()).unwrap_or(u32::MAX), kind, data)
}

/// A PNG whose IHDR declares `width`×`height` with the given bit depth and
/// colour type, followed by `chunks` and IEND.
pub fn png_with(width: u32, height: u32, depth: u8, color: u8, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    for c in chunks {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&png_chunk(b"IEND", &[]));
    out
}

/// A zlib stream of `n` zero bytes in stored blocks (no compression needed to build it).
pub fn zlib_stored_zeros(n: usize) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut left = n;
    loop {
        let block = left.min(0xFFFF);
        left -= block;
        out.push(u8::from(left == 0));
        let len = u16::try_from(block).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend(std::iter::repeat_n(0u8, block));
        if left == 0 {
            break;
        }
    }
    // Adler-32 of n zeros: a = 1, b = n mod 65521.
    let b = u32::try_from(n % 65521).unwrap_or(0);
    out.extend_from_slice(&((b << 16) | 1).to_be_bytes());
    out
}

// ---------------------------------------------------------------- GIF

/// A GIF whose logical screen is `screen` and whose first frame claims `frame`.
pub fn gif_with_frame(screen: (u16, u16), frame: (u16, u16)) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&screen.0.to_le_bytes());
    out.extend_from_slice(&screen.1.to_le_bytes());
    // Global colour table of 2 entries.
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0]);
    out.extend_from_slice(&frame.0.to_le_bytes());
    out.extend_from_slice(&frame.1.to_le_bytes());
    // No local table, LZW minimum code size 2, one tiny data block, trailer.
    out.extend_from_slice(&[0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    out
}

// ---------------------------------------------------------------- ISO-BMFF / HEIF

/// A box with a 32-bit size field set to `size` (normally `8 + body.len()`).
pub fn bmff_box_sized(size: u32, kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

pub fn bmff_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    bmff_box_sized(
        u32::try_from(body.len() + 8).unwrap_or(u32::MAX),
        kind,
        body,
    )
}

/// A box with a 64-bit `largesize` set to `size`.
pub fn bmff_large_box(size: u64, kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A full box body: version and flags, then `rest`.
pub fn full_box(kind: &[u8; 4], version: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![version, 0, 0, 0];
    body.extend_from_slice(rest);
    bmff_box(kind, &body)
}

/// `ftyp` with major brand `heic` and compatible brands `mif1`, `heic`.
pub fn heic_ftyp() -> Vec<u8> {
    bmff_box(b"ftyp", b"heic\0\0\0\0mif1heic")
}

/// A HEIC whose `meta` holds `children` after an `hdlr` of type `pict`.
pub fn heic_with_meta(children: &[Vec<u8>]) -> Vec<u8> {
    let mut meta = vec![0, 0, 0, 0];
    meta.extend_from_slice(&full_box(
        b"hdlr",
        0,
        b"\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0",
    ));
    for c in children {
        meta.extend_from_slice(c);
    }
    let mut out = heic_ftyp();
    out.extend_from_slice(&bmff_box(b"meta", &meta));
    out
}

/// `depth` boxes, each the only child of the one before.
pub fn bmff_nested(depth: usize, kind: &[u8; 4]) -> Vec<u8> {
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..depth {
        inner = bmff_box(kind, &inner);
    }
    inner
}

// ---------------------------------------------------------------- TIFF / EXIF

/// A little-endian TIFF header whose first IFD is at `ifd_offset`, then `body`
/// (which starts at offset 8).
pub fn tiff_le(ifd_offset: u32, body: &[u8]) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&ifd_offset.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// One 12-byte IFD entry (little-endian).
pub fn ifd_entry(tag: u16, kind: u16, count: u32, value: u32) -> [u8; 12] {
    let mut e = [0u8; 12];
    e[..2].copy_from_slice(&tag.to_le_bytes());
    e[2..4].copy_from_slice(&kind.to_le_bytes());
    e[4..8].copy_from_slice(&count.to_le_bytes());
    e[8..].copy_from_slice(&value.to_le_bytes());
    e
}

/// An IFD at offset 8 whose next-IFD pointer and Exif pointer point at itself.
pub fn tiff_self_loop() -> Vec<u8> {
    let mut ifd = 2u16.to_le_bytes().to_vec();
    ifd.extend_from_slice(&ifd_entry(0x0112, 3, 1, 6)); // Orientation
    ifd.extend_from_slice(&ifd_entry(0x8769, 4, 1, 8)); // ExifIFDPointer -> itself
    ifd.extend_from_slice(&8u32.to_le_bytes()); // next IFD -> itself
    tiff_le(8, &ifd)
}

/// An IFD with `entries` entries (up to 65535), each claiming `count` LONGs at offset 8.
pub fn tiff_many_entries(entries: u16, count: u32) -> Vec<u8> {
    let mut ifd = entries.to_le_bytes().to_vec();
    for i in 0..entries {
        ifd.extend_from_slice(&ifd_entry(0x0100u16.wrapping_add(i), 4, count, 8));
    }
    ifd.extend_from_slice(&0u32.to_le_bytes());
    tiff_le(8, &ifd)
}

// ---------------------------------------------------------------- the set

/// Every hostile file of the end-to-end test: each must be skipped, with a reason.
pub fn hostile_set() -> Vec<Crafted> {
    let big_app = jpeg_segment(0xE1, &[0u8; 65533]);
    vec![
        Crafted {
            name: "jpeg_zero_segment_length.jpg",
            bytes: {
                let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00];
                b.extend_from_slice(&[0u8; 64]);
                b
            },
            what: "a JPEG segment of length 0 (a walker that adds it loops in place)",
        },
        Crafted {
            name: "jpeg_segment_past_end.jpg",
            bytes: vec![0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF, b'E', b'x', b'i', b'f'],
            what: "a JPEG segment claiming 65535 bytes in a 10-byte file",
        },
        Crafted {
            name: "jpeg_fill_bytes.jpg",
            bytes: {
                let mut b = vec![0xFF, 0xD8];
                b.extend(std::iter::repeat_n(0xFFu8, 4 << 20));
                b
            },
            what: "4 MiB of JPEG fill bytes and no marker",
        },
        Crafted {
            name: "jpeg_65535x65535.jpg",
            bytes: jpeg_with(&[jpeg_sof(65535, 65535)]),
            what: "a JPEG frame header declaring 65535×65535 (4.3 gigapixels)",
        },
        Crafted {
            name: "jpeg_many_segments.jpg",
            bytes: {
                let mut b = vec![0xFF, 0xD8];
                for _ in 0..64 {
                    b.extend_from_slice(&big_app);
                }
                b
            },
            what: "4 MiB of maximal APP1 segments and no image",
        },
        Crafted {
            name: "jpeg_exif_ifd_loop.jpg",
            bytes: jpeg_with(&[jpeg_app1_exif(&tiff_self_loop()), jpeg_sof(16, 16)]),
            what: "EXIF whose IFD points at itself, in a JPEG with no real image data",
        },
        Crafted {
            name: "png_65535x65535.png",
            bytes: png_with(
                65535,
                65535,
                8,
                6,
                &[png_chunk(b"IDAT", &zlib_stored_zeros(64))],
            ),
            what: "a PNG declaring 65535×65535 RGBA",
        },
        Crafted {
            name: "png_15000x15000_rgba16.png",
            bytes: png_with(
                15000,
                15000,
                16,
                6,
                &[png_chunk(b"IDAT", &zlib_stored_zeros(64))],
            ),
            what: "a PNG under the pixel limit whose 16-bit RGBA buffer (1.8 GB) is over the memory limit",
        },
        Crafted {
            name: "png_chunk_length_max.png",
            bytes: png_with(8, 8, 8, 2, &[png_chunk_with_len(u32::MAX, b"tEXt", b"x")]),
            what: "a PNG chunk claiming 4 GiB",
        },
        Crafted {
            name: "png_exif_many_entries.png",
            bytes: png_with(
                8,
                8,
                8,
                2,
                &[png_chunk(b"eXIf", &tiff_many_entries(65535, 0x3FFF_FFFF))],
            ),
            what: "a PNG whose EXIF IFD has 65535 entries each claiming 4 GiB, and no image data",
        },
        Crafted {
            name: "gif_frame_20000x20000.gif",
            bytes: gif_with_frame((1, 1), (20000, 20000)),
            what: "a 1×1 GIF whose first frame claims 20000×20000",
        },
        Crafted {
            name: "webp_canvas_16m.webp",
            bytes: {
                let mut vp8x = vec![0u8; 10];
                vp8x[4..7].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
                vp8x[7..10].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
                let mut body = b"WEBP".to_vec();
                body.extend_from_slice(b"VP8X");
                body.extend_from_slice(&10u32.to_le_bytes());
                body.extend_from_slice(&vp8x);
                let mut b = b"RIFF".to_vec();
                b.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_le_bytes());
                b.extend_from_slice(&body);
                b
            },
            what: "a WebP canvas of 16777216×16777216",
        },
        Crafted {
            name: "tiff_ifd_loop.tif",
            bytes: tiff_self_loop(),
            what: "a TIFF whose only IFD points at itself and holds no image",
        },
        Crafted {
            name: "tiff_many_entries.tif",
            bytes: tiff_many_entries(65535, 0x3FFF_FFFF),
            what: "a TIFF IFD with 65535 entries each claiming 4 GiB",
        },
        Crafted {
            name: "heic_largesize_max.heic",
            bytes: {
                let mut b = heic_ftyp();
                b.extend_from_slice(&bmff_large_box(u64::MAX, b"mdat", &[0u8; 32]));
                b
            },
            what: "a HEIC box whose 64-bit size is u64::MAX (wraps an unchecked walker)",
        },
        Crafted {
            name: "heic_largesize_wraps_to_start.heic",
            bytes: {
                let mut b = heic_ftyp();
                let at = b.len() as u64;
                // pos + size wraps to 0: an unchecked walker starts over, forever.
                b.extend_from_slice(&bmff_large_box(at.wrapping_neg(), b"free", &[0u8; 16]));
                b
            },
            what: "a HEIC box whose 64-bit size sends an unchecked walker back to byte 0",
        },
        Crafted {
            name: "heic_box_size_1_short.heic",
            bytes: {
                let mut b = heic_ftyp();
                b.extend_from_slice(&bmff_large_box(8, b"meta", &[]));
                b
            },
            what: "a HEIC box whose 64-bit size (8) is smaller than its own header",
        },
        Crafted {
            name: "heic_deep_nesting.heic",
            bytes: heic_with_meta(&[bmff_nested(5000, b"dinf")]),
            what: "HEIC boxes nested 5000 deep",
        },
        Crafted {
            name: "heic_huge_iinf.heic",
            bytes: heic_with_meta(&[full_box(b"iinf", 1, &u32::MAX.to_be_bytes())]),
            what: "a HEIC iinf claiming 4294967295 items",
        },
        Crafted {
            name: "heic_huge_iloc.heic",
            bytes: {
                // version 1, offset/length/base sizes 4/4/4, index size 0, 65535 items.
                let mut rest = vec![0x44, 0x40];
                rest.extend_from_slice(&65535u16.to_be_bytes());
                heic_with_meta(&[
                    full_box(b"pitm", 0, &1u16.to_be_bytes()),
                    full_box(b"iloc", 1, &rest),
                ])
            },
            what: "a HEIC iloc claiming 65535 items with no entries",
        },
        Crafted {
            name: "heic_truncated_meta.heic",
            bytes: {
                let mut b = heic_ftyp();
                b.extend_from_slice(&bmff_box_sized(1 << 20, b"meta", &[0u8; 64]));
                b
            },
            what: "a HEIC meta box claiming 1 MiB in a 100-byte file",
        },
    ]
}
