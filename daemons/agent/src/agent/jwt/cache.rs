//! The JWT-SVID cache: tokens by (entry id, sorted audience), bounded by the bytes it holds;
//! the oldest insertions go first when a new token would pass the bound.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

/// Bytes of JWT-SVIDs and their keys the agent keeps.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// What one cached token costs beyond its strings (map slots, vectors, timestamps).
const ENTRY_OVERHEAD: usize = 128;
/// What one audience costs beyond its bytes (a `String` in the key).
const AUDIENCE_OVERHEAD: usize = 24;

/// A token as the server minted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    /// The kid in its header (empty when none).
    pub kid: String,
    /// Its expiry (unix seconds).
    pub not_after: i64,
}

impl Minted {
    /// `token`, its kid read from its header (not verified: the server just minted it).
    pub fn new(token: String, not_after: i64) -> Self {
        let kid = trustdeck_spiffe::jwt::decode_unverified(&token)
            .ok()
            .and_then(|(h, _)| h.kid)
            .unwrap_or_default();
        Self {
            token,
            kid,
            not_after,
        }
    }
}

/// An entry id and its sorted audience.
pub type Key = (String, Vec<String>);

struct Cached {
    token: String,
    /// The kid that signed it (empty when its header names none).
    kid: String,
    /// Its expiry (unix seconds).
    not_after: i64,
    /// When a new token is minted instead.
    renew: DateTime<Utc>,
    /// Insertion order, for eviction.
    seq: u64,
    bytes: usize,
}

/// JWT-SVIDs while they have more than half their life left, at most `max_bytes` of them.
pub struct JwtCache {
    map: HashMap<Key, Cached>,
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    bytes: usize,
    max_bytes: usize,
}

/// What a cached token and its key cost.
fn cost(key: &Key, token: &str) -> usize {
    ENTRY_OVERHEAD
        + key.0.len()
        + key
            .1
            .iter()
            .map(|a| a.len() + AUDIENCE_OVERHEAD)
            .sum::<usize>()
        + token.len()
}

impl JwtCache {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// The token for `key`, while `now` is before its renewal time.
    pub fn get(&self, key: &Key, now: DateTime<Utc>) -> Option<&str> {
        self.map
            .get(key)
            .filter(|c| now < c.renew)
            .map(|c| c.token.as_str())
    }

    /// Caches `token` (signed by `kid`, expiring at `not_after`) for `key` until `renew`,
    /// evicting the oldest tokens until it fits. A token larger than the whole cache is not
    /// kept.
    pub fn insert(&mut self, key: Key, token: Minted, renew: DateTime<Utc>) {
        let Minted {
            token,
            kid,
            not_after,
        } = token;
        self.remove(&key);
        let bytes = cost(&key, &token);
        if bytes > self.max_bytes {
            return;
        }
        while self.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(c) = self.map.remove(&oldest) {
                self.bytes -= c.bytes;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.bytes += bytes;
        self.map.insert(
            key,
            Cached {
                token,
                kid,
                not_after,
                renew,
                seq,
                bytes,
            },
        );
    }

    /// Drops every token signed by one of `kids` (tainted); returns how many.
    pub fn drop_kids(&mut self, kids: &[String]) -> usize {
        let gone: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, c)| kids.contains(&c.kid))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.remove(k);
        }
        gone.len()
    }

    /// The kid and expiry of every token held, for the agent's held-SVID report.
    pub fn held(&self) -> impl Iterator<Item = (&str, i64)> {
        self.map.values().map(|c| (c.kid.as_str(), c.not_after))
    }

    fn remove(&mut self, key: &Key) {
        if let Some(c) = self.map.remove(key) {
            self.order.remove(&c.seq);
            self.bytes -= c.bytes;
        }
    }
}

#[cfg(test)]
impl JwtCache {
    /// Bytes held, as counted against the bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(entry: &str, aud: &str) -> Key {
        (entry.to_string(), vec![aud.to_string()])
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn m(token: &str) -> Minted {
        signed(token, "kid-1")
    }

    fn signed(token: &str, kid: &str) -> Minted {
        Minted {
            token: token.into(),
            kid: kid.into(),
            not_after: 1_800_000_100,
        }
    }

    #[test]
    fn tokens_of_a_tainted_kid_are_dropped_and_the_rest_reported() {
        let mut c = JwtCache::new(MAX_BYTES);
        c.insert(key("e", "a"), signed("ta", "old"), t(50));
        c.insert(key("e", "b"), signed("tb", "new"), t(50));
        c.insert(key("f", "a"), signed("tc", "old"), t(50));
        let before = c.bytes();
        assert_eq!(c.drop_kids(&["old".to_string()]), 2);
        assert!(c.bytes() < before);
        assert_eq!(c.get(&key("e", "a"), t(0)), None);
        assert_eq!(c.get(&key("e", "b"), t(0)), Some("tb"));
        let held: Vec<_> = c.held().collect();
        assert_eq!(held, vec![("new", 1_800_000_100)]);
        assert_eq!(c.drop_kids(&["unknown".to_string()]), 0);
    }

    #[test]
    fn the_kid_is_read_from_the_token_header() {
        use trustdeck_pki::SigningKey;
        use trustdeck_spiffe::SpiffeId;
        use trustdeck_spiffe::jwt::{JwtClaims, mint};
        let (key, _) = trustdeck_pki::keys::SoftwareKey::ephemeral().unwrap();
        let claims = JwtClaims::new(
            SpiffeId::parse("spiffe://td/w").unwrap(),
            vec!["x".into()],
            t(100),
        );
        let tok = mint(&claims, "k1", |m| key.sign(m)).unwrap();
        assert_eq!(Minted::new(tok, 5).kid, "k1");
        assert_eq!(Minted::new("not a jwt".into(), 5).kid, "");
    }

    #[test]
    fn serves_a_token_until_its_renewal_time() {
        let mut c = JwtCache::new(MAX_BYTES);
        c.insert(key("e", "db"), m("tok"), t(10));
        assert_eq!(c.get(&key("e", "db"), t(9)), Some("tok"));
        assert_eq!(c.get(&key("e", "db"), t(10)), None);
        assert_eq!(c.get(&key("e", "web"), t(0)), None);
    }

    #[test]
    fn holds_no_more_bytes_than_its_bound_and_evicts_oldest_first() {
        let one = cost(&key("e", "a000"), &"x".repeat(1000));
        let mut c = JwtCache::new(one * 3);
        for i in 0..10 {
            c.insert(key("e", &format!("a{i:03}")), m(&"x".repeat(1000)), t(100));
            assert!(c.bytes() <= one * 3, "{} > {}", c.bytes(), one * 3);
        }
        assert_eq!(c.len(), 3);
        let kept: Vec<bool> = (0..10)
            .map(|i| c.get(&key("e", &format!("a{i:03}")), t(0)).is_some())
            .collect();
        assert_eq!(kept, [vec![false; 7], vec![true; 3]].concat());
    }

    #[test]
    fn a_flood_of_large_keys_stays_within_the_bound() {
        let mut c = JwtCache::new(64 * 1024);
        for i in 0..2_000 {
            let aud: Vec<String> = (0..8)
                .map(|j| format!("{i}-{j}-{}", "y".repeat(500)))
                .collect();
            c.insert(("e".into(), aud), m(&"z".repeat(6_000)), t(100));
        }
        assert!(c.bytes() <= 64 * 1024);
        assert!(!c.is_empty());
    }

    #[test]
    fn replacing_a_token_counts_it_once_and_too_large_ones_are_not_kept() {
        let mut c = JwtCache::new(10_000);
        c.insert(key("e", "db"), m("old"), t(10));
        let before = c.bytes();
        c.insert(key("e", "db"), m("new"), t(20));
        assert_eq!(c.bytes(), before);
        assert_eq!(c.get(&key("e", "db"), t(15)), Some("new"));
        c.insert(key("e", "big"), m(&"x".repeat(20_000)), t(20));
        assert_eq!(c.get(&key("e", "big"), t(0)), None);
        assert_eq!(c.len(), 1);
    }
}
