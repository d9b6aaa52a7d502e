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

fn open(format: ImageFormatKind, bytes: &[u8]) -> Result<HeifContext<'_>, MediaError> {
    super::container::check_boxes(format, bytes)?;
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
    // The decoded size is libheif's, not the header's we checked: check it again before
    // sizing a buffer from it.
    check_dimensions(format, width, height)?;
    let short = || MediaError::corrupt(format, "libheif returned a short image");
    let row = (width as usize).checked_mul(3).ok_or_else(short)?;
    let mut data = Vec::with_capacity(row.checked_mul(height as usize).ok_or_else(short)?);
    for y in 0..height as usize {
        let start = y.checked_mul(plane.stride).ok_or_else(short)?;
        let end = start.checked_add(row).ok_or_else(short)?;
        let line = plane.data.get(start..end).ok_or_else(short)?;
        data.extend_from_slice(line);
    }
    Ok(Rgb {
        data,
        width,
        height,
    })
}
