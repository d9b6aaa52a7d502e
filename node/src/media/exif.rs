//! The EXIF fields kith keeps, read with kamadak-exif's raw TIFF reader.

use exif::{Exif, Field, In, Reader, Tag, Value};

/// The EXIF fields of [`super::PhotoMeta`].
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ExifFields {
    pub orientation: Option<u16>,
    pub taken_at: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub gps: Option<(f64, f64)>,
}

/// Parses a TIFF structure (the EXIF payload without any `Exif\0\0` prefix).
/// Broken EXIF never fails an import: whatever can be read is returned.
pub(super) fn parse(tiff: &[u8]) -> ExifFields {
    let tiff = super::container::tiff_payload(tiff).unwrap_or(tiff);
    let exif = match Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
    {
        Ok(exif) => exif,
        Err(err) => match err.distill_partial_result(|errors| {
            for e in errors {
                tracing::debug!("ignoring part of the EXIF data: {e}");
            }
        }) {
            Ok(exif) => exif,
            Err(err) => {
                tracing::debug!("unreadable EXIF data: {err}");
                return ExifFields::default();
            }
        },
    };
    fields(&exif)
}

fn fields(exif: &Exif) -> ExifFields {
    let primary = |tag| exif.get_field(tag, In::PRIMARY);
    let orientation = primary(Tag::Orientation)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| (1..=8).contains(v));
    let taken_at = primary(Tag::DateTimeOriginal)
        .and_then(datetime)
        .or_else(|| primary(Tag::DateTime).and_then(datetime));
    ExifFields {
        orientation,
        taken_at,
        make: primary(Tag::Make).and_then(ascii),
        model: primary(Tag::Model).and_then(ascii),
        gps: gps(exif),
    }
}

/// The first ASCII string, cut at the first NUL, without trailing blanks.
fn ascii(field: &Field) -> Option<String> {
    let Value::Ascii(strings) = &field.value else {
        return None;
    };
    let raw = strings.first()?;
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches([' ', '\t', '\r', '\n']).trim_start();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `YYYY:MM:DD HH:MM:SS` → `YYYY-MM-DDTHH:MM:SS`; placeholders such as
/// `0000:00:00 00:00:00` or blanks give `None`.
fn datetime(field: &Field) -> Option<String> {
    let Value::Ascii(strings) = &field.value else {
        return None;
    };
    let dt = exif::DateTime::from_ascii(strings.first()?).ok()?;
    let valid = (1..=9999).contains(&dt.year)
        && (1..=12).contains(&dt.month)
        && (1..=31).contains(&dt.day)
        && dt.hour <= 23
        && dt.minute <= 59
        && dt.second <= 60;
    valid.then(|| {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
        )
    })
}

fn gps(exif: &Exif) -> Option<(f64, f64)> {
    let lat = coordinate(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S', 90.0)?;
    let lon = coordinate(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W', 180.0)?;
    // (0, 0) is what some phones write when they had no fix.
    (lat != 0.0 || lon != 0.0).then_some((lat, lon))
}

fn coordinate(exif: &Exif, tag: Tag, ref_tag: Tag, negative: u8, max: f64) -> Option<f64> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Rational(parts) = &field.value else {
        return None;
    };
    let mut degrees = 0.0;
    for (part, scale) in parts.iter().zip([1.0, 60.0, 3600.0]) {
        if part.denom == 0 {
            // 0/0 is how some writers say "unknown"; it only matters if it is not zero.
            if part.num == 0 {
                continue;
            }
            return None;
        }
        degrees += part.to_f64() / scale;
    }
    if parts.is_empty() || !degrees.is_finite() || degrees > max {
        return None;
    }
    let sign = match exif.get_field(ref_tag, In::PRIMARY).map(|f| &f.value) {
        Some(Value::Ascii(refs))
            if refs
                .first()
                .and_then(|r| r.first())
                .map(u8::to_ascii_uppercase)
                == Some(negative) =>
        {
            -1.0
        }
        _ => 1.0,
    };
    Some(sign * degrees)
}
