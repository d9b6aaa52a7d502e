//! Size buckets for sealed blobs and changes.
//!
//! A store-only node sees every ciphertext's length; padding each plaintext up to a bucket means
//! it learns roughly the order of magnitude and nothing finer (DESIGN.md, "Rules the membership
//! log and the keys follow").

/// The smallest bucket.
pub const MIN_BUCKET: usize = 4 * 1024;
/// Each octave above the smallest bucket is cut into this many equal steps, so padding adds at
/// most 1/8 (12.5 %) to a length while a length's bucket still tells only its octave and eighth.
pub const STEPS_PER_OCTAVE: usize = 8;

/// The smallest bucket that holds `n` bytes: 4 KiB, then for `n` in (2^k, 2^(k+1)] the next
/// multiple of 2^k / 8.
///
/// Never less than `n`: for lengths above `usize::MAX / 2`, where no bucket fits, it returns
/// `n` itself (such lengths never occur in memory).
pub fn bucket_len(n: usize) -> usize {
    if n <= MIN_BUCKET {
        return MIN_BUCKET;
    }
    let Some(octave_top) = n.checked_next_power_of_two() else {
        return n;
    };
    let step = octave_top / 2 / STEPS_PER_OCTAVE;
    n.div_ceil(step) * step
}

/// Whether `n` is exactly a bucket size (what a well-formed padded stream must have).
pub fn is_bucket(n: usize) -> bool {
    n >= MIN_BUCKET && bucket_len(n) == n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket_len(0), 4096);
        assert_eq!(bucket_len(4096), 4096);
        assert_eq!(bucket_len(4097), 4608);
        assert_eq!(bucket_len(65_536), 65_536);
        assert_eq!(bucket_len(65_537), 73_728);
        // A typical 600 kB original: 10 % of padding, not the 75 % of the next power of two.
        assert_eq!(bucket_len(600_000), 655_360);
        assert_eq!(bucket_len(1 << 20), 1 << 20);
        assert_eq!(bucket_len((1 << 20) + 1), (1 << 20) + (1 << 17));
        assert_eq!(bucket_len((5 << 20) - 3), 5 << 20);
        assert_eq!(bucket_len(usize::MAX), usize::MAX);
        assert!(is_bucket(3 << 20) && is_bucket(1 << 19) && is_bucket(3 << 18));
        assert!(!is_bucket(0) && !is_bucket(1024) && !is_bucket(4097) && !is_bucket((1 << 20) + 1));
    }

    #[test]
    fn bucket_is_smallest_fit() {
        for n in (0..3 << 20).step_by(997) {
            let b = bucket_len(n);
            assert!(b >= n && is_bucket(b), "{n} -> {b}");
            assert!(
                n <= MIN_BUCKET || b - n <= n / STEPS_PER_OCTAVE,
                "{n} -> {b}"
            );
        }
    }
}
