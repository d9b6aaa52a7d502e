//! Generated photos for the benchmarks: tiny distinct JPEGs whose EXIF dates spread over ten
//! years, so a library of them has the ~120 monthly documents a real one has.

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

/// In which order of their dates generated photos are named (and so imported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// As a camera roll's names follow its dates.
    Chronological,
    /// Consecutive files months apart, as a folder gathered from many sources: every batch of
    /// an import touches most of the library's monthly documents.
    Scattered,
}

/// Writes `n` distinct 16×16 JPEGs into `dir` whose EXIF DateTimeOriginal spreads them evenly
/// over 2015-01-01 … 2024-12-31, named in `order` of those dates. Returns the total bytes.
pub fn generate(dir: &Path, n: usize, order: Order) -> Result<u64> {
    generate_range(dir, 0..n, n, order)
}

/// The photos of [`generate`] numbered `range` out of `n` (each number makes distinct pixels
/// and its own date), so a library can grow by photos it does not hold yet.
pub fn generate_range(
    dir: &Path,
    range: std::ops::Range<usize>,
    n: usize,
    order: Order,
) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    const SPAN_S: u64 = 3653 * 86_400;
    const START_DAYS: i64 = 16_436; // 2015-01-01 as days since 1970-01-01
    range
        .into_par_iter()
        .map(|i| -> Result<u64> {
            let slot = match order {
                Order::Chronological => i,
                Order::Scattered => scatter(i, n),
            };
            let secs = slot as u64 * SPAN_S / n.max(1) as u64;
            let date = exif_datetime(START_DAYS, secs);
            let seed = blake3::hash(&(i as u64).to_le_bytes());
            let seed = seed.as_bytes();
            let mut pixels = Vec::with_capacity(16 * 16 * 3);
            for y in 0..16u8 {
                for x in 0..16u8 {
                    let k = usize::from(y) * 16 + usize::from(x);
                    pixels.push(seed[k % 32].wrapping_add(x * 8));
                    pixels.push(seed[(k + 11) % 32].wrapping_add(y * 8));
                    pixels.push(seed[(k + 23) % 32]);
                }
            }
            let mut jpeg = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 85);
            encoder.add_app_segment(1, exif_segment(&date))?;
            encoder.encode(&pixels, 16, 16, jpeg_encoder::ColorType::Rgb)?;
            let path = dir.join(format!("img-{i:07}.jpg"));
            std::fs::write(&path, &jpeg)?;
            Ok(jpeg.len() as u64)
        })
        .sum()
}

/// `YYYY:MM:DD HH:MM:SS` of `start_days` (days since 1970-01-01) plus `secs`.
pub fn exif_datetime(start_days: i64, secs: u64) -> String {
    let days = start_days + (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days → civil date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}:{month:02}:{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An APP1 EXIF payload holding only DateTimeOriginal: `Exif\0\0`, then a little-endian TIFF
/// with IFD0 pointing to an Exif IFD with the one tag.
pub fn exif_segment(datetime: &str) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"II");
    t.extend_from_slice(&42u16.to_le_bytes());
    t.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: one entry, ExifIFDPointer (0x8769, LONG) → 26.
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&0x8769u16.to_le_bytes());
    t.extend_from_slice(&4u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&26u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // Exif IFD at 26: DateTimeOriginal (0x9003, ASCII, 20 bytes) at 44.
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&0x9003u16.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&20u32.to_le_bytes());
    t.extend_from_slice(&44u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(datetime.as_bytes());
    t.push(0);
    let mut out = b"Exif\0\0".to_vec();
    out.extend_from_slice(&t);
    out
}

/// Where the `i`-th of `n` files falls in date order when files are scattered: a stride
/// coprime with `n` visits every slot once, jumping about a fifth of the span each time.
fn scatter(i: usize, n: usize) -> usize {
    let mut stride = (n / 5).max(1) + 1;
    while gcd(stride, n) != 1 {
        stride += 1;
    }
    ((i as u128 * stride as u128) % n.max(1) as u128) as usize
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scattering_visits_every_date_once() {
        for n in [1, 2, 7, 1000, 1001] {
            let mut seen: Vec<usize> = (0..n).map(|i| scatter(i, n)).collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }
}
