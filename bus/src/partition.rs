//! Which partition a key falls in. Every command of a conversation (keyed by
//! its id), of a phone's bot replies (the phone) or of a tenant's sync
//! changes (the tenant) goes to one partition, and one worker owns a
//! partition at a time, so those commands are handled in order by one
//! process. The hash is fixed and documented, so a bot or an operator
//! publishing onto the bus computes the same partition:
//! `fnv1a_32(utf8(key)) mod count`.

/// How many partitions commands are spread over when not configured.
pub const DEFAULT_COUNT: u32 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitions {
    count: u32,
}

impl Default for Partitions {
    fn default() -> Self {
        Self::new(DEFAULT_COUNT)
    }
}

impl Partitions {
    /// `count` partitions (at least one).
    pub const fn new(count: u32) -> Self {
        Self { count: if count == 0 { 1 } else { count } }
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// The partition of `key`.
    pub fn of(self, key: &str) -> u32 {
        fnv1a_32(key.as_bytes()) % self.count
    }
}

/// FNV-1a, 32 bits: a few lines in any language, and it spreads short ids well.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_as_published() {
        // Reference values of FNV-1a 32 (as in the README's example).
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
        assert_eq!(Partitions::new(32).of("foobar"), 0xbf9c_f968 % 32);
    }

    #[test]
    fn keys_spread_over_every_partition() {
        let partitions = Partitions::new(32);
        let mut counts = [0u32; 32];
        for i in 0..3200 {
            counts[partitions.of(&format!("conv-{i}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (50..=150).contains(&n)), "{counts:?}");
        assert_eq!(Partitions::new(0).count(), 1);
    }
}
