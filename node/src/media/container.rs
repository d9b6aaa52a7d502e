//! Header walkers for the containers: pixel size and the raw EXIF (TIFF
//! structure) without decoding any pixels, and the top-level ISO-BMFF box walk
//! that HEIF files get before libheif sees them.
//!
//! Every length, offset and count here is the file's to claim, so every walk
//! moves strictly forward through the bytes (at most one step per byte), index
//! arithmetic is checked, and nothing is allocated from a header field: the
//! EXIF block is borrowed from the file, never copied by a claimed size.

use std::io::Cursor;

use image::ImageDecoder;

use super::{ImageFormatKind, MediaError};

/// What a container header tells us.
#[derive(Debug, Default)]
pub(super) struct Header<'a> {
    pub width: u32,
    pub height: u32,
    /// The size of the first frame when it may differ from the image's (GIF: a
    /// frame is not bound to the logical screen, and the decoder allocates it).
    pub first_frame: Option<(u32, u32)>,
    /// The EXIF TIFF structure (starting with `II*\0` or `MM\0*`), if any.
    pub exif: Option<&'a [u8]>,
}

pub(super) fn read_header(format: ImageFormatKind, bytes: &[u8]) -> Result<Header<'_>, MediaError> {
    match format {
        ImageFormatKind::Jpeg => {
            let jpeg = scan_jpeg(bytes)?;
            if !jpeg.has_eoi {
                return Err(MediaError::truncated(
                    format,
                    "the JPEG end-of-image marker is missing",
                ));
            }
            Ok(Header {
                width: jpeg.width,
                height: jpeg.height,
                first_frame: None,
                exif: jpeg.exif,
            })
        }
        ImageFormatKind::Png => png_header(bytes),
        ImageFormatKind::Webp => webp_header(bytes),
        ImageFormatKind::Gif => gif_header(bytes),
        ImageFormatKind::Tiff => tiff_header(bytes),
        ImageFormatKind::Heic | ImageFormatKind::Heif => Err(MediaError::Unsupported {
            format: format.display_name(),
        }),
    }
}

/// Strip an APP1-style `Exif\0\0` prefix (WebP and PNG writers often keep it)
/// and check that a TIFF header follows.
pub(super) fn tiff_payload(raw: &[u8]) -> Option<&[u8]> {
    let raw = raw.strip_prefix(b"Exif\0\0").unwrap_or(raw);
    (raw.starts_with(b"II*\0") || raw.starts_with(b"MM\0*")).then_some(raw)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

// ---------------------------------------------------------------- JPEG

#[derive(Debug)]
pub(super) struct JpegScan<'a> {
    pub width: u32,
    pub height: u32,
    pub exif: Option<&'a [u8]>,
    /// Whether an EOI marker (FF D9) follows the first start-of-scan. Entropy-
    /// coded data never contains FF D9 (FF is stuffed as FF 00), so if it is
    /// absent the file was cut short.
    pub has_eoi: bool,
}

/// Walks the marker segments up to the first SOS. Every step moves at least two
/// bytes forward (a segment's length counts its own two bytes and must be at
/// least 2), so the walk ends within the file's length; the EOI search after it
/// is one linear pass.
pub(super) fn scan_jpeg(b: &[u8]) -> Result<JpegScan<'_>, MediaError> {
    const F: ImageFormatKind = ImageFormatKind::Jpeg;
    let truncated = || MediaError::truncated(F, "the file ends inside the JPEG headers");
    let mut pos = 2;
    let mut size = None;
    let mut exif = None;
    loop {
        let Some(&byte) = b.get(pos) else {
            return Err(truncated());
        };
        if byte != 0xFF {
            return Err(MediaError::corrupt(
                F,
                format!("expected a JPEG marker at byte {pos}"),
            ));
        }
        // Skip fill bytes.
        while b.get(pos.saturating_add(1)) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = b.get(pos.saturating_add(1)) else {
            return Err(truncated());
        };
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => {
                pos = pos.saturating_add(2);
                continue;
            }
            0xD9 => {
                return Err(MediaError::corrupt(
                    F,
                    "the JPEG ends before any image data",
                ));
            }
            _ => {}
        }
        let len = usize::from(be16(b, pos.saturating_add(2)).ok_or_else(truncated)?);
        if len < 2 {
            return Err(MediaError::corrupt(F, "a JPEG segment has a bad length"));
        }
        // pos < b.len() here (b[pos] was read) and len <= 65535: no overflow.
        let end = pos + 2 + len;
        let seg = b.get(pos + 4..end).ok_or_else(truncated)?;
        match marker {
            0xE1 if exif.is_none() => {
                if let Some(tiff) = seg.strip_prefix(b"Exif\0\0") {
                    exif = Some(tiff);
                }
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) && size.is_none() => {
                let (Some(h), Some(w)) = (be16(seg, 1), be16(seg, 3)) else {
                    return Err(MediaError::corrupt(F, "the JPEG frame header is too short"));
                };
                size = Some((u32::from(w), u32::from(h)));
            }
            0xDA => {
                let Some((width, height)) = size else {
                    return Err(MediaError::corrupt(
                        F,
                        "the JPEG has image data but no frame header",
                    ));
                };
                let has_eoi = b[end..].windows(2).any(|w| w == [0xFF, 0xD9]);
                return Ok(JpegScan {
                    width,
                    height,
                    exif,
                    has_eoi,
                });
            }
            _ => {}
        }
        pos = end;
    }
}

// ---------------------------------------------------------------- ISO-BMFF (HEIF)

/// Walks the top-level ISO-BMFF boxes: a box that claims to run past the end
/// of the file means the file was cut short (libheif >= 1.19 would otherwise
/// fill the missing tiles with grey).
///
/// Every size is the file's to claim (up to `u64::MAX` with a 64-bit
/// `largesize`), so the arithmetic is checked: an unchecked `pos + size` wraps
/// and can send the walk back to the start of the file forever. Each box is at
/// least 8 bytes and the position only moves forward, so the walk takes at most
/// `len / 8` steps; nested boxes are libheif's (its own limits on nesting depth,
/// children per box and item counts apply).
pub(super) fn check_boxes(format: ImageFormatKind, b: &[u8]) -> Result<(), MediaError> {
    let len = b.len() as u64;
    let mut pos: u64 = 0;
    while len - pos >= 8 {
        // pos < len here, so it fits in usize.
        let at = pos as usize;
        let (Some(size32), Some(kind)) = (be32(b, at), b.get(at + 4..at + 8)) else {
            break;
        };
        let kind = String::from_utf8_lossy(kind).into_owned();
        let size = match size32 {
            0 => return Ok(()), // extends to the end of the file
            1 => {
                let Some(large) = b
                    .get(at + 8..at + 16)
                    .and_then(|s| <[u8; 8]>::try_from(s).ok())
                else {
                    return Err(MediaError::truncated(
                        format,
                        format!("the file ends inside the '{kind}' box header"),
                    ));
                };
                u64::from_be_bytes(large)
            }
            n => u64::from(n),
        };
        let header = if size32 == 1 { 16 } else { 8 };
        if size < header {
            return Err(MediaError::corrupt(
                format,
                format!("the '{kind}' box has an impossible size ({size} bytes)"),
            ));
        }
        let left = len - pos;
        if size > left {
            return Err(MediaError::truncated(
                format,
                format!("the '{kind}' box needs {size} bytes but only {left} are left"),
            ));
        }
        pos += size; // size <= len - pos: cannot overflow, never passes len
    }
    Ok(())
}

// ---------------------------------------------------------------- PNG

fn png_header(b: &[u8]) -> Result<Header<'_>, MediaError> {
    const F: ImageFormatKind = ImageFormatKind::Png;
    // IHDR must be the first chunk.
    if b.get(12..16) != Some(b"IHDR") {
        return Err(if b.len() < 33 {
            MediaError::truncated(F, "the file ends inside the PNG header")
        } else {
            MediaError::corrupt(F, "the PNG header chunk is missing")
        });
    }
    let (Some(width), Some(height)) = (be32(b, 16), be32(b, 20)) else {
        return Err(MediaError::truncated(
            F,
            "the file ends inside the PNG header",
        ));
    };
    let mut header = Header {
        width,
        height,
        first_frame: None,
        exif: None,
    };
    // Walk the chunks (no decompression) looking for eXIf. Each step moves at
    // least 12 bytes forward (length, type, CRC), and a chunk that claims to run
    // past the end ends the walk.
    let mut pos = 8usize;
    while let (Some(len), Some(kind)) = (
        be32(b, pos),
        pos.checked_add(4).and_then(|at| b.get(at..at + 4)),
    ) {
        let Some(data_start) = pos.checked_add(8) else {
            break;
        };
        let Some(data_end) = data_start.checked_add(len as usize) else {
            break;
        };
        let Some(data) = b.get(data_start..data_end) else {
            break;
        };
        match kind {
            b"eXIf" => {
                header.exif = tiff_payload(data);
                break;
            }
            b"IEND" => break,
            _ => {}
        }
        let Some(next) = data_end.checked_add(4) else {
            break;
        };
        pos = next;
    }
    Ok(header)
}

// ---------------------------------------------------------------- WebP

fn webp_header(b: &[u8]) -> Result<Header<'_>, MediaError> {
    const F: ImageFormatKind = ImageFormatKind::Webp;
    let mut size = None;
    let mut exif = None;
    // Each step moves at least 8 bytes forward; sizes saturate, so a chunk
    // claiming 4 GiB just ends the walk.
    let mut pos = 12usize;
    while let (Some(kind), Some(len)) = (
        pos.checked_add(4).and_then(|end| b.get(pos..end)),
        pos.checked_add(4).and_then(|at| le32(b, at)),
    ) {
        let start = pos.saturating_add(8);
        let end = start.saturating_add(len as usize);
        // A cut-off chunk: use what is there for the size, the decoder will complain.
        let data = &b[start.min(b.len())..end.min(b.len())];
        match kind {
            b"VP8X" if size.is_none() && data.len() >= 10 => {
                let w = u32::from_le_bytes([data[4], data[5], data[6], 0]) + 1;
                let h = u32::from_le_bytes([data[7], data[8], data[9], 0]) + 1;
                size = Some((w, h));
            }
            b"VP8 " if size.is_none() && data.len() >= 10 && data[3..6] == [0x9D, 0x01, 0x2A] => {
                let w = u32::from(u16::from_le_bytes([data[6], data[7]]) & 0x3FFF);
                let h = u32::from(u16::from_le_bytes([data[8], data[9]]) & 0x3FFF);
                size = Some((w, h));
            }
            b"VP8L" if size.is_none() && data.len() >= 5 && data[0] == 0x2F => {
                let bits = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
                size = Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1));
            }
            b"EXIF" if exif.is_none() => exif = tiff_payload(data),
            _ => {}
        }
        pos = end.saturating_add(len as usize & 1);
    }
    let Some((width, height)) = size else {
        return Err(if b.len() < 30 {
            MediaError::truncated(F, "the file ends inside the WebP header")
        } else {
            MediaError::corrupt(F, "no WebP image header found")
        });
    };
    Ok(Header {
        width,
        height,
        first_frame: None,
        exif,
    })
}

// ---------------------------------------------------------------- GIF

/// The logical screen size, and the first frame's size: the decoder allocates
/// the frame at its own size (a 1×1 screen may carry a 20000×20000 frame), so
/// both are checked against the limits before decoding.
fn gif_header(b: &[u8]) -> Result<Header<'_>, MediaError> {
    const F: ImageFormatKind = ImageFormatKind::Gif;
    let le16 = |at: usize| -> Option<u32> {
        Some(u32::from(u16::from_le_bytes([
            *b.get(at)?,
            *b.get(at.checked_add(1)?)?,
        ])))
    };
    let truncated = || MediaError::truncated(F, "the file ends inside the GIF header");
    let (Some(width), Some(height), Some(&flags)) = (le16(6), le16(8), b.get(10)) else {
        return Err(truncated());
    };
    // Header (13 bytes), then the global colour table: 3 × 2^(n+1) bytes.
    let mut pos: usize = 13;
    if flags & 0x80 != 0 {
        pos += 3usize << ((flags & 0x07) + 1);
    }
    // Extensions up to the first image descriptor. Every step moves at least
    // one byte forward, so the walk ends within the file's length.
    let first_frame = loop {
        match b.get(pos) {
            None => {
                return Err(MediaError::truncated(
                    F,
                    "the file ends before the first GIF frame",
                ));
            }
            Some(0x21) => {
                // Extension: introducer, label, then sub-blocks up to a 0 length.
                pos = pos.checked_add(2).ok_or_else(truncated)?;
                loop {
                    let Some(&n) = b.get(pos) else {
                        return Err(MediaError::truncated(
                            F,
                            "the file ends inside a GIF extension",
                        ));
                    };
                    pos = pos.checked_add(1 + usize::from(n)).ok_or_else(truncated)?;
                    if n == 0 {
                        break;
                    }
                }
            }
            Some(0x2C) => {
                let (Some(w), Some(h)) = (le16(pos + 5), le16(pos + 7)) else {
                    return Err(MediaError::truncated(
                        F,
                        "the file ends inside the first GIF frame header",
                    ));
                };
                break (w, h);
            }
            Some(0x3B) => return Err(MediaError::corrupt(F, "the GIF ends before any frame")),
            Some(other) => {
                return Err(MediaError::corrupt(
                    F,
                    format!("unexpected GIF block 0x{other:02X} at byte {pos}"),
                ));
            }
        }
    };
    Ok(Header {
        width,
        height,
        first_frame: Some(first_frame),
        exif: None,
    })
}

// ---------------------------------------------------------------- TIFF

fn tiff_header(b: &[u8]) -> Result<Header<'_>, MediaError> {
    let decoder = image::codecs::tiff::TiffDecoder::new(Cursor::new(b))
        .map_err(|e| super::render::image_error(ImageFormatKind::Tiff, e))?;
    let (width, height) = decoder.dimensions();
    Ok(Header {
        width,
        height,
        first_frame: None,
        // The file itself is the TIFF structure that holds the EXIF tags.
        exif: Some(b),
    })
}
