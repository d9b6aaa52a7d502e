//! The pure media step of import: bytes in, metadata and renditions out.
//!
//! Nothing here touches the disk, the network or keys. [`read_meta`] reads the
//! container header and EXIF only (cheap, no pixel decode); [`analyze`] also
//! decodes the pixels once and renders a JPEG preview (long edge
//! [`PREVIEW_EDGE`]) and a JPEG thumbnail (long edge [`THUMBNAIL_EDGE`], made
//! from the preview), both upright.
//!
//! Rules:
//! - The format is sniffed from the content, never from the file name.
//! - Dimensions are checked against [`MAX_PIXELS`] from the header, before any
//!   pixel buffer is allocated (decompression bombs).
//! - JPEGs are decoded strictly: damaged entropy data or a missing EOI marker
//!   is an error, not a grey patch.
//! - EXIF Orientation is applied to the renditions, except for HEIF, whose
//!   `irot`/`imir` transforms are applied instead (the HEIF rule).

mod container;
#[doc(hidden)]
pub mod crafted;
mod exif;
#[cfg(test)]
mod fuzz_tests;
#[cfg(feature = "heif")]
mod heif;
#[cfg(test)]
mod hostile_tests;
mod render;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

/// Long edge of the thumbnail rendition, in pixels.
pub const THUMBNAIL_EDGE: u32 = 320;
/// Long edge of the preview rendition, in pixels.
pub const PREVIEW_EDGE: u32 = 2048;
/// JPEG quality of the thumbnail rendition.
pub const THUMBNAIL_QUALITY: u8 = 80;
/// JPEG quality of the preview rendition.
pub const PREVIEW_QUALITY: u8 = 85;
/// Largest image accepted, in pixels (width × height as stored, and for GIF also the first
/// frame's declared size). Above the largest phone sensors (200 MP) with some room; checked
/// from the header, before any decoder allocates.
pub const MAX_PIXELS: u64 = 250_000_000;
/// Most bytes a decoder may allocate for one image (the `image` crate's `Limits::max_alloc`).
/// A [`MAX_PIXELS`] image as RGBA8 is 1.0 GB, so every 8-bit image under the pixel limit fits;
/// a 16-bit one fits up to about 130 MP. Anything that would need more (a small PNG declaring
/// 15000×15000 RGBA16 wants 1.8 GB) is refused before its pixels are inflated.
pub const MAX_ALLOC: u64 = 1024 * 1024 * 1024;
/// Most `ftyp` compatible brands looked at when sniffing. Real files list fewer than ten; the
/// box size is the file's to claim, so without a bound a crafted `ftyp` spanning the whole file
/// would make the sniffer walk (and once, collect) every four bytes of it.
const MAX_FTYP_BRANDS: usize = 64;

/// The container format, as sniffed from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormatKind {
    /// JPEG, including MPO (multi-picture) files, of which the first image is used.
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
    /// HEIF with major brand `heic` (what phones write).
    Heic,
    /// Any other HEIF flavour (`mif1`, `heix`, …), e.g. camera `.hif` files.
    Heif,
}

impl ImageFormatKind {
    /// The lowercase name, as used in serde.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Tiff => "tiff",
            Self::Heic => "heic",
            Self::Heif => "heif",
        }
    }

    /// The MIME type of the original.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Tiff => "image/tiff",
            Self::Heic => "image/heic",
            Self::Heif => "image/heif",
        }
    }

    /// A name for people ("JPEG", "HEIC", …).
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Webp => "WebP",
            Self::Gif => "GIF",
            Self::Tiff => "TIFF",
            Self::Heic => "HEIC",
            Self::Heif => "HEIF",
        }
    }

    fn is_heif(self) -> bool {
        matches!(self, Self::Heic | Self::Heif)
    }
}

impl std::fmt::Display for ImageFormatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display_name())
    }
}

/// What [`read_meta`] learns from the header and EXIF.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhotoMeta {
    pub format: ImageFormatKind,
    pub mime: &'static str,
    /// Pixel size as stored, before any rotation (for HEIF: the coded `ispe` size).
    pub width: u32,
    pub height: u32,
    /// Pixel size as displayed: after EXIF Orientation, or after `irot` for HEIF.
    pub display_width: u32,
    pub display_height: u32,
    /// The EXIF Orientation tag, if present and valid (1..=8). For HEIF it is
    /// reported but not applied.
    pub orientation: Option<u16>,
    /// EXIF DateTimeOriginal (fallback: DateTime) as `YYYY-MM-DDTHH:MM:SS`, local
    /// camera time without a zone.
    pub taken_at: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// (latitude, longitude) in signed decimal degrees, S and W negative.
    pub gps: Option<(f64, f64)>,
}

/// A JPEG-encoded rendition.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendition {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Debug for Rendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendition")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Everything import needs from a photo's bytes.
#[derive(Debug, Clone)]
pub struct Analyzed {
    pub meta: PhotoMeta,
    pub thumbnail: Rendition,
    pub preview: Rendition,
}

/// Why a file cannot be imported as a photo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error(
        "the file is empty (0 bytes), probably an interrupted copy or download; copy it again from the source"
    )]
    Empty,
    #[error(
        "the file is not a photo kith can read: its content is not JPEG, PNG, WebP, GIF, TIFF or HEIC/HEIF, whatever its name says"
    )]
    NotAnImage,
    #[error(
        "the {format} file ends before the image data does (truncated download or copy?); re-copy it from the source ({detail})"
    )]
    Truncated {
        format: ImageFormatKind,
        detail: String,
    },
    #[error(
        "the {format} image data is damaged and cannot be decoded without errors ({detail}); if you have another copy of this photo, import that one"
    )]
    Corrupt {
        format: ImageFormatKind,
        detail: String,
    },
    #[error(
        "the image says it is {width}×{height} pixels, more than kith decodes (250 megapixels, 1 GiB of pixel data), so it is refused to protect the device's memory (a damaged or deliberately malformed file?)"
    )]
    TooLarge { width: u32, height: u32 },
    #[error(
        "the file's format ({format}) is recognised, but this build of kith cannot read it; convert the photo to JPEG and import that"
    )]
    Unsupported { format: &'static str },
    #[error(
        "making the preview of this photo failed ({detail}); this is a bug in kith, please report it"
    )]
    Internal { detail: String },
}

impl MediaError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty-file",
            Self::NotAnImage => "not-an-image",
            Self::Truncated { .. } => "truncated",
            Self::Corrupt { .. } => "corrupt-data",
            Self::TooLarge { .. } => "dimensions-too-large",
            Self::Unsupported { .. } => "unsupported-format",
            Self::Internal { .. } => "internal-error",
        }
    }

    fn truncated(format: ImageFormatKind, detail: impl Into<String>) -> Self {
        Self::Truncated {
            format,
            detail: detail.into(),
        }
    }

    fn corrupt(format: ImageFormatKind, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            format,
            detail: detail.into(),
        }
    }
}

/// What the content sniffer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Known(ImageFormatKind),
    /// Recognised, but not decodable here.
    Unsupported(&'static str),
}

/// Sniff the format from the first bytes. Never looks at a file name.
fn sniff(bytes: &[u8]) -> Result<Sniffed, MediaError> {
    use ImageFormatKind as F;
    if bytes.is_empty() {
        return Err(MediaError::Empty);
    }
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    let found = if starts(&[0xFF, 0xD8, 0xFF]) {
        Sniffed::Known(F::Jpeg)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Sniffed::Known(F::Png)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Sniffed::Known(F::Gif)
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Sniffed::Known(F::Webp)
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Sniffed::Known(F::Tiff)
    } else if starts(b"II+\0") || starts(b"MM\0+") {
        Sniffed::Unsupported("BigTIFF")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return sniff_ftyp(bytes);
    } else if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL \r\n\x87\n") {
        Sniffed::Unsupported("JPEG XL")
    } else if starts(b"BM") && bytes.len() >= 26 && bytes[14] >= 12 && bytes[15..18] == [0, 0, 0] {
        Sniffed::Unsupported("BMP")
    } else {
        return Err(MediaError::NotAnImage);
    };
    Ok(found)
}

/// ISO-BMFF `ftyp`: tell HEIC/HEIF from AVIF and video.
fn sniff_ftyp(bytes: &[u8]) -> Result<Sniffed, MediaError> {
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    // max then min, never clamp: a 12..16-byte file has len < 16.
    let end = size.max(16).min(bytes.len());
    let major = &bytes[8..12];
    let compatible = bytes.get(16..end).unwrap_or(&[]);
    let has = |brand: &[u8]| {
        major == brand
            || compatible
                .chunks_exact(4)
                .take(MAX_FTYP_BRANDS)
                .any(|b| b == brand)
    };
    if major == b"heic" {
        return Ok(Sniffed::Known(ImageFormatKind::Heic));
    }
    if major == b"avif" || major == b"avis" {
        return Ok(Sniffed::Unsupported("AVIF"));
    }
    if [
        b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
    ]
    .iter()
    .any(|b| major == *b)
    {
        return Ok(Sniffed::Known(ImageFormatKind::Heif));
    }
    if has(b"mif1") || has(b"msf1") || has(b"heif") {
        if has(b"heic") || has(b"heix") {
            return Ok(Sniffed::Known(ImageFormatKind::Heif));
        }
        if has(b"avif") {
            return Ok(Sniffed::Unsupported("AVIF"));
        }
        return Ok(Sniffed::Known(ImageFormatKind::Heif));
    }
    if has(b"crx ") {
        return Ok(Sniffed::Unsupported("Canon CR3 raw"));
    }
    // MP4/MOV video and other ISO-BMFF files.
    Err(MediaError::NotAnImage)
}

fn sniff_supported(bytes: &[u8]) -> Result<ImageFormatKind, MediaError> {
    match sniff(bytes)? {
        Sniffed::Known(format) => Ok(format),
        Sniffed::Unsupported(format) => Err(MediaError::Unsupported { format }),
    }
}

/// Refuse decompression bombs from the header, before any pixel allocation.
fn check_dimensions(format: ImageFormatKind, width: u32, height: u32) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::corrupt(
            format,
            format!("the header says the image is {width}×{height} pixels"),
        ));
    }
    check_pixel_count(width, height)
}

/// Refuse more than [`MAX_PIXELS`] (u32 × u32 always fits in u64).
fn check_pixel_count(width: u32, height: u32) -> Result<(), MediaError> {
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(MediaError::TooLarge { width, height });
    }
    Ok(())
}

/// Size after applying an EXIF orientation (5..=8 swap the axes).
fn oriented_size(width: u32, height: u32, orientation: Option<u16>) -> (u32, u32) {
    match orientation {
        Some(5..=8) => (height, width),
        _ => (width, height),
    }
}

/// Reads the format, size and EXIF fields without decoding the pixels.
///
/// JPEGs are also checked for their EOI marker (a cheap scan), so a truncated
/// JPEG already fails here.
pub fn read_meta(bytes: &[u8]) -> Result<PhotoMeta, MediaError> {
    let format = sniff_supported(bytes)?;
    if format.is_heif() {
        return read_meta_heif(format, bytes);
    }
    let header = container::read_header(format, bytes)?;
    check_dimensions(format, header.width, header.height)?;
    if let Some((width, height)) = header.first_frame {
        check_pixel_count(width, height)?;
    }
    let fields = match header.exif {
        Some(tiff) => exif::parse(tiff),
        None => exif::ExifFields::default(),
    };
    let (display_width, display_height) =
        oriented_size(header.width, header.height, fields.orientation);
    Ok(PhotoMeta::new(
        format,
        (header.width, header.height),
        (display_width, display_height),
        fields,
    ))
}

impl PhotoMeta {
    /// Stored size, displayed size and EXIF fields, whichever container they came from.
    fn new(
        format: ImageFormatKind,
        (width, height): (u32, u32),
        (display_width, display_height): (u32, u32),
        fields: exif::ExifFields,
    ) -> Self {
        PhotoMeta {
            format,
            mime: format.mime(),
            width,
            height,
            display_width,
            display_height,
            orientation: fields.orientation,
            taken_at: fields.taken_at,
            make: fields.make,
            model: fields.model,
            gps: fields.gps,
        }
    }
}

#[cfg(feature = "heif")]
fn read_meta_heif(format: ImageFormatKind, bytes: &[u8]) -> Result<PhotoMeta, MediaError> {
    heif::read_meta(format, bytes)
}

#[cfg(not(feature = "heif"))]
fn read_meta_heif(format: ImageFormatKind, _bytes: &[u8]) -> Result<PhotoMeta, MediaError> {
    Err(MediaError::Unsupported {
        format: format.display_name(),
    })
}

/// Runs every container walker over `bytes` (the format sniffer, the JPEG segment scan, the
/// ISO-BMFF box check and each format's header reader), dropping what they return. For the
/// fuzzers only: the property harness (`fuzz_tests`) and the coverage-guided target in
/// `tests/fuzz` call this one list, so neither can miss a walker the other covers.
#[doc(hidden)]
pub fn fuzz_container_walkers(bytes: &[u8]) {
    let _ = sniff(bytes);
    let _ = container::scan_jpeg(bytes);
    let _ = container::check_boxes(ImageFormatKind::Heic, bytes);
    for format in [
        ImageFormatKind::Jpeg,
        ImageFormatKind::Png,
        ImageFormatKind::Webp,
        ImageFormatKind::Gif,
    ] {
        let _ = container::read_header(format, bytes);
    }
}

/// Runs the EXIF reader over `bytes` taken as a TIFF block, dropping what it returns. For the
/// fuzzers only, as [`fuzz_container_walkers`].
#[doc(hidden)]
pub fn fuzz_exif(bytes: &[u8]) {
    let _ = exif::parse(bytes);
}

/// Reads the metadata, decodes the pixels once and renders the upright preview
/// and thumbnail.
pub fn analyze(bytes: &[u8]) -> Result<Analyzed, MediaError> {
    let meta = read_meta(bytes)?;
    let preview = if meta.format.is_heif() {
        // libheif applies irot/imir itself; EXIF Orientation is ignored (HEIF rule).
        render::fit(decode_heif(&meta, bytes)?, PREVIEW_EDGE)?
    } else {
        let stored = render::decode(meta.format, bytes, meta.width, meta.height)?;
        if (stored.width, stored.height) != (meta.width, meta.height) {
            return Err(MediaError::corrupt(
                meta.format,
                format!(
                    "the header says {}×{} pixels but the image data is {}×{}",
                    meta.width, meta.height, stored.width, stored.height
                ),
            ));
        }
        // Shrink first, then turn: turning the preview is cheaper than the original.
        render::orient(render::fit(stored, PREVIEW_EDGE)?, meta.orientation)?
    };
    let thumbnail = render::fitted_copy(&preview, THUMBNAIL_EDGE)?;
    let preview = render::encode_jpeg(&preview, PREVIEW_QUALITY)?;
    let thumbnail = render::encode_jpeg(&thumbnail, THUMBNAIL_QUALITY)?;
    Ok(Analyzed {
        meta,
        thumbnail,
        preview,
    })
}

#[cfg(feature = "heif")]
fn decode_heif(meta: &PhotoMeta, bytes: &[u8]) -> Result<render::Rgb, MediaError> {
    heif::decode(meta, bytes)
}

#[cfg(not(feature = "heif"))]
fn decode_heif(meta: &PhotoMeta, _bytes: &[u8]) -> Result<render::Rgb, MediaError> {
    Err(MediaError::Unsupported {
        format: meta.format.display_name(),
    })
}
