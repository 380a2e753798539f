//! Random identifiers: records, instances, sessions.

/// `N` random bytes as lowercase hex (`2 * N` characters), from the thread's CSPRNG.
pub fn random_id<const N: usize>() -> String {
    hex::encode(rand::random::<[u8; N]>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_of_the_asked_length_and_differ() {
        let a = super::random_id::<12>();
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::random_id::<12>());
    }
}
