//! Sticky percentage buckets: `murmur3_x86_32("{salt}:{tenantId}", seed 0)
//! mod 100000`; a tenant is in a p% split when its bucket is below p × 1000.
//! The same in every cell and in `tenantctl`.

use uuid::Uuid;

/// How many buckets tenants are hashed into: one per 0.001 %.
pub const BUCKETS: u32 = 100_000;

/// The bucket of `tenant` for `salt`, 0 to 99 999.
pub fn bucket(salt: &str, tenant: Uuid) -> u32 {
    const ID: usize = uuid::fmt::Hyphenated::LENGTH;
    let mut id = [0u8; ID];
    let id = tenant.hyphenated().encode_lower(&mut id).as_bytes();
    let n = salt.len() + 1 + ID;
    // Salts are short: hash from the stack, not the heap.
    let mut stack = [0u8; 160];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if n <= stack.len() {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    buf[..salt.len()].copy_from_slice(salt.as_bytes());
    buf[salt.len()] = b':';
    buf[salt.len() + 1..].copy_from_slice(id);
    hash(buf) % BUCKETS
}

/// MurmurHash3 x86_32 with seed 0.
pub fn hash(bytes: &[u8]) -> u32 {
    // Reading from a slice cannot fail.
    murmur3::murmur3_32(&mut std::io::Cursor::new(bytes), 0).unwrap_or_default()
}

/// The bucket bound of a percentage (0 to 100, rounded to 0.001; values
/// outside are clamped): buckets below it are in.
pub fn threshold(percentage: f64) -> u32 {
    (percentage * 1000.0).round().clamp(0.0, BUCKETS as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_x86_32_known_vectors() {
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(b"hello"), 0x248b_fa47);
        assert_eq!(
            hash(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn bucket_hashes_salt_colon_tenant() {
        let t = Uuid::parse_str("0192f0c1-7a8b-7c3d-9e4f-112233445566").unwrap();
        let expect = hash(b"new-checkout:0192f0c1-7a8b-7c3d-9e4f-112233445566") % 100_000;
        assert_eq!(bucket("new-checkout", t), expect);
        assert!(bucket("new-checkout", t) < BUCKETS);
    }

    #[test]
    fn splits_are_close_to_their_percentage_and_nested() {
        let ids: Vec<Uuid> = (0..20_000).map(|_| Uuid::now_v7()).collect();
        let in10 = ids
            .iter()
            .filter(|t| bucket("k", **t) < threshold(10.0))
            .count();
        assert!((1_700..2_300).contains(&in10), "10% of 20000 gave {in10}");
        // Sticky and nested: whoever is in 1% is in 10%.
        for t in &ids {
            if bucket("k", *t) < threshold(1.0) {
                assert!(bucket("k", *t) < threshold(10.0));
            }
        }
        assert_eq!(threshold(0.001), 1);
        assert_eq!(threshold(100.0), 100_000);
    }
}
