//! Header walkers for the non-HEIF containers: pixel size and the raw EXIF
//! (TIFF structure) without decoding any pixels.

use std::io::Cursor;

use image::ImageDecoder;

use super::{ImageFormatKind, MediaError};

/// What a container header tells us.
#[derive(Debug, Default)]
pub(super) struct Header {
    pub width: u32,
    pub height: u32,
    /// The EXIF TIFF structure (starting with `II*\0` or `MM\0*`), if any.
    pub exif: Option<Vec<u8>>,
}

pub(super) fn read_header(format: ImageFormatKind, bytes: &[u8]) -> Result<Header, MediaError> {
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
                exif: jpeg.exif.map(<[u8]>::to_vec),
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

/// Walks the marker segments up to the first SOS.
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
        while b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = b.get(pos + 1) else {
            return Err(truncated());
        };
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => {
                pos += 2;
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
        let len = usize::from(be16(b, pos + 2).ok_or_else(truncated)?);
        if len < 2 {
            return Err(MediaError::corrupt(F, "a JPEG segment has a bad length"));
        }
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

// ---------------------------------------------------------------- PNG

fn png_header(b: &[u8]) -> Result<Header, MediaError> {
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
        exif: None,
    };
    // Walk the chunks (no decompression) looking for eXIf.
    let mut pos = 8;
    while let (Some(len), Some(kind)) = (be32(b, pos), b.get(pos + 4..pos + 8)) {
        let data_start = pos + 8;
        let Some(data) = data_start
            .checked_add(len as usize)
            .and_then(|end| b.get(data_start..end))
        else {
            break;
        };
        match kind {
            b"eXIf" => {
                header.exif = tiff_payload(data).map(<[u8]>::to_vec);
                break;
            }
            b"IEND" => break,
            _ => {}
        }
        pos = data_start + len as usize + 4;
    }
    Ok(header)
}

// ---------------------------------------------------------------- WebP

fn webp_header(b: &[u8]) -> Result<Header, MediaError> {
    const F: ImageFormatKind = ImageFormatKind::Webp;
    let mut size = None;
    let mut exif = None;
    let mut pos = 12;
    while let (Some(kind), Some(len)) = (b.get(pos..pos + 4), le32(b, pos + 4)) {
        let start = pos + 8;
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
            b"EXIF" if exif.is_none() => exif = tiff_payload(data).map(<[u8]>::to_vec),
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
        exif,
    })
}

// ---------------------------------------------------------------- GIF

fn gif_header(b: &[u8]) -> Result<Header, MediaError> {
    let (Some(w), Some(h)) = (b.get(6..8), b.get(8..10)) else {
        return Err(MediaError::truncated(
            ImageFormatKind::Gif,
            "the file ends inside the GIF header",
        ));
    };
    Ok(Header {
        width: u32::from(u16::from_le_bytes([w[0], w[1]])),
        height: u32::from(u16::from_le_bytes([h[0], h[1]])),
        exif: None,
    })
}

// ---------------------------------------------------------------- TIFF

fn tiff_header(b: &[u8]) -> Result<Header, MediaError> {
    let decoder = image::codecs::tiff::TiffDecoder::new(Cursor::new(b))
        .map_err(|e| super::render::image_error(ImageFormatKind::Tiff, e))?;
    let (width, height) = decoder.dimensions();
    Ok(Header {
        width,
        height,
        // The file itself is the TIFF structure that holds the EXIF tags.
        exif: Some(b.to_vec()),
    })
}
