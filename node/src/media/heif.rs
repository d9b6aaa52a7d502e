//! HEIC/HEIF through libheif (libheif-rs 0.20 on libheif >= 1.14).
//!
//! libheif applies the HEIF transforms (`irot`, `imir`, `clap`) when decoding,
//! and the handle's width/height are the transformed (display) size. EXIF
//! Orientation is reported but not applied: the HEIF rule is that `irot` wins.

use std::sync::OnceLock;

use libheif_rs::{
    ColorSpace, HeifContext, HeifError, HeifErrorCode, HeifErrorSubCode, ImageHandle, ItemId,
    LibHeif, RgbChroma,
};

use super::render::Rgb;
use super::{ImageFormatKind, MediaError, PhotoMeta, check_dimensions, exif};

fn lib() -> &'static LibHeif {
    static LIB: OnceLock<LibHeif> = OnceLock::new();
    LIB.get_or_init(LibHeif::new)
}

fn heif_error(format: ImageFormatKind, err: &HeifError) -> MediaError {
    let detail = format!("libheif: {}", err.message);
    match (err.code, err.sub_code) {
        (_, HeifErrorSubCode::EndOfData) => MediaError::truncated(format, detail),
        (HeifErrorCode::UnsupportedFeature, _) | (HeifErrorCode::UnsupportedFileType, _) => {
            MediaError::Unsupported {
                format: "HEIF with a codec or feature the installed libheif lacks",
            }
        }
        _ => MediaError::corrupt(format, detail),
    }
}

/// Walks the top-level ISO-BMFF boxes: a box that claims to run past the end
/// of the file means the file was cut short (libheif >= 1.19 would otherwise
/// fill the missing tiles with grey).
fn check_boxes(format: ImageFormatKind, b: &[u8]) -> Result<(), MediaError> {
    let mut pos: u64 = 0;
    let len = b.len() as u64;
    while pos + 8 <= len {
        let at = pos as usize;
        let size32 = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let kind = String::from_utf8_lossy(&b[at + 4..at + 8]).into_owned();
        let size = match size32 {
            0 => return Ok(()), // extends to the end of the file
            1 => {
                let Some(large) = b.get(at + 8..at + 16) else {
                    return Err(MediaError::truncated(
                        format,
                        format!("the file ends inside the '{kind}' box header"),
                    ));
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(large);
                u64::from_be_bytes(be)
            }
            n => u64::from(n),
        };
        if size < 8 {
            return Err(MediaError::corrupt(
                format,
                format!("the '{kind}' box has an impossible size"),
            ));
        }
        if pos + size > len {
            return Err(MediaError::truncated(
                format,
                format!(
                    "the '{kind}' box needs {size} bytes but only {} are left",
                    len - pos
                ),
            ));
        }
        pos += size;
    }
    Ok(())
}

fn open(format: ImageFormatKind, bytes: &[u8]) -> Result<HeifContext<'_>, MediaError> {
    check_boxes(format, bytes)?;
    lib();
    HeifContext::read_from_bytes(bytes).map_err(|e| heif_error(format, &e))
}

fn primary(format: ImageFormatKind, ctx: &HeifContext<'_>) -> Result<ImageHandle, MediaError> {
    ctx.primary_image_handle()
        .map_err(|e| heif_error(format, &e))
}

/// Coded (`ispe`) size and display size, checked against the limits.
fn sizes(
    format: ImageFormatKind,
    handle: &ImageHandle,
) -> Result<(u32, u32, u32, u32), MediaError> {
    let (dw, dh) = (handle.width(), handle.height());
    let ispe = |v: i32, fallback: u32| u32::try_from(v).ok().filter(|v| *v > 0).unwrap_or(fallback);
    let (w, h) = (
        ispe(handle.ispe_width(), dw),
        ispe(handle.ispe_height(), dh),
    );
    check_dimensions(format, w, h)?;
    check_dimensions(format, dw, dh)?;
    Ok((w, h, dw, dh))
}

/// The EXIF block's TIFF structure. HEIF Exif items start with a 4-byte
/// offset to the TIFF header.
fn exif_tiff(handle: &ImageHandle) -> Option<Vec<u8>> {
    let mut ids: [ItemId; 4] = [0; 4];
    let count = handle.metadata_block_ids(&mut ids, b"Exif");
    let id = *ids.get(..count)?.first()?;
    let data = handle.metadata(id).ok()?;
    let offset = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let tiff = data.get(4usize.checked_add(offset)?..)?;
    Some(tiff.to_vec())
}

pub(super) fn read_meta(format: ImageFormatKind, bytes: &[u8]) -> Result<PhotoMeta, MediaError> {
    let ctx = open(format, bytes)?;
    let handle = primary(format, &ctx)?;
    let (width, height, display_width, display_height) = sizes(format, &handle)?;
    let fields = exif_tiff(&handle)
        .map(|tiff| exif::parse(&tiff))
        .unwrap_or_default();
    Ok(PhotoMeta::new(
        format,
        (width, height),
        (display_width, display_height),
        fields,
    ))
}

/// Decodes the primary image upright (libheif applies `irot`/`imir`), as RGB8.
pub(super) fn decode(meta: &PhotoMeta, bytes: &[u8]) -> Result<Rgb, MediaError> {
    let format = meta.format;
    let ctx = open(format, bytes)?;
    let handle = primary(format, &ctx)?;
    sizes(format, &handle)?;
    let image = lib()
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(|e| heif_error(format, &e))?;
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| MediaError::corrupt(format, "libheif returned no RGB plane"))?;
    if plane.storage_bits_per_pixel != 24 {
        return Err(MediaError::Internal {
            detail: format!(
                "libheif returned {} bits per pixel instead of 24",
                plane.storage_bits_per_pixel
            ),
        });
    }
    let (width, height) = (plane.width, plane.height);
    let row = width as usize * 3;
    let mut data = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let start = y * plane.stride;
        let line = plane
            .data
            .get(start..start + row)
            .ok_or_else(|| MediaError::corrupt(format, "libheif returned a short image"))?;
        data.extend_from_slice(line);
    }
    Ok(Rgb {
        data,
        width,
        height,
    })
}
