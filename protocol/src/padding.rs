//! Size buckets for sealed blobs and changes.
//!
//! A store-only node sees every ciphertext's length; padding each plaintext up to a bucket means
//! it learns roughly the order of magnitude and nothing finer (DESIGN.md, "Rules the membership
//! log and the keys follow").

/// The smallest bucket.
pub const MIN_BUCKET: usize = 4 * 1024;
/// Above this size buckets grow linearly instead of doubling, so padding wastes at most 1 MiB.
pub const LINEAR_STEP: usize = 1024 * 1024;

/// The smallest bucket that holds `n` bytes: 4 KiB, then powers of two up to 1 MiB, then
/// multiples of 1 MiB.
///
/// Never less than `n`: for the few lengths within 1 MiB of `usize::MAX`, where no bucket fits,
/// it returns `n` itself (such lengths never occur in memory).
pub fn bucket_len(n: usize) -> usize {
    if n <= MIN_BUCKET {
        MIN_BUCKET
    } else if n <= LINEAR_STEP {
        n.next_power_of_two()
    } else {
        n.div_ceil(LINEAR_STEP)
            .checked_mul(LINEAR_STEP)
            .unwrap_or(n)
    }
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
        assert_eq!(bucket_len(4097), 8192);
        assert_eq!(bucket_len(65_536), 65_536);
        assert_eq!(bucket_len(600_000), 1 << 20);
        assert_eq!(bucket_len(1 << 20), 1 << 20);
        assert_eq!(bucket_len((1 << 20) + 1), 2 << 20);
        assert_eq!(bucket_len((5 << 20) - 3), 5 << 20);
        assert_eq!(bucket_len(usize::MAX), usize::MAX);
        assert!(is_bucket(3 << 20) && is_bucket(1 << 19) && !is_bucket(3 << 18));
        assert!(!is_bucket(0) && !is_bucket(1024));
    }

    #[test]
    fn bucket_is_smallest_fit() {
        for n in (0..3 << 20).step_by(997) {
            let b = bucket_len(n);
            assert!(b >= n && is_bucket(b), "{n} -> {b}");
        }
    }
}
