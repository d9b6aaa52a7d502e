//! Pixel work: decode to RGB8, shrink with fast_image_resize, turn upright,
//! encode JPEG.

use std::io::Cursor;

use fast_image_resize as fr;
use image::{DynamicImage, ImageError, RgbImage, metadata::Orientation};
use zune_jpeg::JpegDecoder;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::{ImageFormatKind, MAX_ALLOC, MediaError, Rendition};

/// Most scans a progressive JPEG may have. Each scan is a full pass over the
/// image, and a few bytes can describe a scan that changes nothing, so without
/// a cap a small file costs hours. Real encoders write at most a few dozen
/// (libjpeg's default progression has 10, mozjpeg's about 20); this is also
/// zune-jpeg's default, written here so an upgrade cannot quietly drop it.
const MAX_JPEG_SCANS: usize = 100;

/// An interleaved RGB8 image.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Rgb {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Debug for Rgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rgb({}×{})", self.width, self.height)
    }
}

/// Decodes the (first) image to RGB8, as stored (no orientation applied).
/// `width`/`height` are the header's size, already checked against the limits.
pub(super) fn decode(
    format: ImageFormatKind,
    bytes: &[u8],
    width: u32,
    height: u32,
) -> Result<Rgb, MediaError> {
    match format {
        ImageFormatKind::Jpeg => decode_jpeg(bytes, width, height),
        ImageFormatKind::Png
        | ImageFormatKind::Webp
        | ImageFormatKind::Gif
        | ImageFormatKind::Tiff => decode_with_image(format, bytes, width, height),
        ImageFormatKind::Heic | ImageFormatKind::Heif => Err(MediaError::Unsupported {
            format: format.display_name(),
        }),
    }
}

/// Strict zune-jpeg: damaged entropy data is an error, not a grey patch. The
/// decoder may not go past the size the header walk checked (zune refuses a
/// second frame header, and any frame larger than this).
fn decode_jpeg(bytes: &[u8], width: u32, height: u32) -> Result<Rgb, MediaError> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(width.max(1) as usize)
        .set_max_height(height.max(1) as usize)
        .jpeg_set_max_scans(MAX_JPEG_SCANS)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let result = decoder.decode();
    let data = result.map_err(|e| jpeg_error(bytes, &e))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| MediaError::corrupt(ImageFormatKind::Jpeg, "no JPEG frame header"))?;
    let (width, height) = (width as u32, height as u32);
    if data.len() as u64 != u64::from(width) * u64::from(height) * 3 {
        return Err(MediaError::corrupt(
            ImageFormatKind::Jpeg,
            "the decoder returned an unexpected amount of pixel data",
        ));
    }
    Ok(Rgb {
        data,
        width,
        height,
    })
}

fn jpeg_error(bytes: &[u8], err: &DecodeErrors) -> MediaError {
    const F: ImageFormatKind = ImageFormatKind::Jpeg;
    let eoi = super::container::scan_jpeg(bytes)
        .map(|s| s.has_eoi)
        .unwrap_or(false);
    match err {
        DecodeErrors::Unsupported(scheme) => MediaError::corrupt(
            F,
            format!("the JPEG uses a coding this decoder does not support: {scheme:?}"),
        ),
        DecodeErrors::ExhaustedData if !eoi => {
            MediaError::truncated(F, "the JPEG image data is cut off")
        }
        _ if !eoi => MediaError::truncated(F, format!("the JPEG image data is cut off: {err}")),
        _ => MediaError::corrupt(F, format!("{err}")),
    }
}

fn decode_with_image(
    format: ImageFormatKind,
    bytes: &[u8],
    width: u32,
    height: u32,
) -> Result<Rgb, MediaError> {
    let image_format = match format {
        ImageFormatKind::Png => image::ImageFormat::Png,
        ImageFormatKind::Webp => image::ImageFormat::WebP,
        ImageFormatKind::Gif => image::ImageFormat::Gif,
        _ => image::ImageFormat::Tiff,
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width.max(1));
    limits.max_image_height = Some(height.max(1));
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(limits);
    // For GIF this is the first frame; for TIFF the first page.
    let decoded = reader.decode().map_err(|e| match e {
        ImageError::Limits(_) => MediaError::TooLarge { width, height },
        e => image_error(format, e),
    })?;
    Ok(to_rgb8(decoded))
}

/// Maps an `image` error to a [`MediaError`]: running out of bytes is
/// truncation, anything else is damage.
pub(super) fn image_error(format: ImageFormatKind, err: ImageError) -> MediaError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::UnexpectedEof
        {
            return MediaError::truncated(format, err.to_string());
        }
        source = e.source();
    }
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("end of file") || lower.contains("eof") || lower.contains("truncated") {
        return MediaError::truncated(format, text);
    }
    MediaError::corrupt(format, text)
}

/// Converts any decoded image to RGB8; transparency is flattened onto white.
/// The RGBA buffer is flattened in place, so a large image costs one buffer
/// here, not two.
pub(super) fn to_rgb8(image: DynamicImage) -> Rgb {
    let (width, height) = (image.width(), image.height());
    let data = if image.color().has_alpha() {
        let mut rgba = image.into_rgba8().into_raw();
        let pixels = rgba.len() / 4;
        // Pixel i moves from 4i to 3i: it is read before anything writes there.
        for i in 0..pixels {
            let a = u32::from(rgba[4 * i + 3]);
            for c in 0..3 {
                let v = (u32::from(rgba[4 * i + c]) * a + 255 * (255 - a) + 127) / 255;
                rgba[3 * i + c] = v as u8;
            }
        }
        rgba.truncate(pixels * 3);
        rgba.shrink_to_fit();
        rgba
    } else {
        image.into_rgb8().into_raw()
    };
    Rgb {
        data,
        width,
        height,
    }
}

/// The size that fits `edge` on the long side, never larger than the original.
pub(super) fn fit_size(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= edge {
        return (width, height);
    }
    let scale = |v: u32| -> u32 {
        let scaled = (u64::from(v) * u64::from(edge) + u64::from(long) / 2) / u64::from(long);
        (scaled as u32).max(1)
    };
    (scale(width), scale(height))
}

/// Shrinks the image so its long edge is at most `edge` (moves it when it already fits).
pub(super) fn fit(src: Rgb, edge: u32) -> Result<Rgb, MediaError> {
    let (w, h) = fit_size(src.width, src.height, edge);
    if (w, h) == (src.width, src.height) {
        return Ok(src);
    }
    resize(&src, w, h)
}

/// A shrunk copy whose long edge is at most `edge`.
pub(super) fn fitted_copy(src: &Rgb, edge: u32) -> Result<Rgb, MediaError> {
    let (w, h) = fit_size(src.width, src.height, edge);
    if (w, h) == (src.width, src.height) {
        return Ok(src.clone());
    }
    resize(src, w, h)
}

fn resize(src: &Rgb, width: u32, height: u32) -> Result<Rgb, MediaError> {
    let internal = |e: &dyn std::fmt::Display| MediaError::Internal {
        detail: format!("resizing failed: {e}"),
    };
    let view = fr::images::ImageRef::new(src.width, src.height, &src.data, fr::PixelType::U8x3)
        .map_err(|e| internal(&e))?;
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    fr::Resizer::new()
        .resize(&view, &mut dst, &options)
        .map_err(|e| internal(&e))?;
    Ok(Rgb {
        data: dst.into_vec(),
        width,
        height,
    })
}

/// Applies an EXIF orientation (1..=8) so the image is upright.
pub(super) fn orient(src: Rgb, orientation: Option<u16>) -> Result<Rgb, MediaError> {
    let Some(orientation) = orientation
        .and_then(|o| u8::try_from(o).ok())
        .and_then(Orientation::from_exif)
        .filter(|o| *o != Orientation::NoTransforms)
    else {
        return Ok(src);
    };
    let buffer = RgbImage::from_raw(src.width, src.height, src.data).ok_or_else(|| {
        MediaError::Internal {
            detail: "pixel buffer of the wrong size".into(),
        }
    })?;
    let mut image = DynamicImage::ImageRgb8(buffer);
    image.apply_orientation(orientation);
    Ok(to_rgb8(image))
}

/// Encodes RGB8 as a baseline JPEG (4:2:0, averaged chroma).
pub(super) fn encode_jpeg(src: &Rgb, quality: u8) -> Result<Rendition, MediaError> {
    let internal = |e: &dyn std::fmt::Display| MediaError::Internal {
        detail: format!("JPEG encoding failed: {e}"),
    };
    let (Ok(width), Ok(height)) = (u16::try_from(src.width), u16::try_from(src.height)) else {
        return Err(internal(&"rendition too large for JPEG"));
    };
    let mut bytes = Vec::with_capacity(src.data.len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    encoder
        .encode(&src.data, width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| internal(&e))?;
    Ok(Rendition {
        bytes,
        width: src.width,
        height: src.height,
    })
}
