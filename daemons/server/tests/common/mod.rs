//! What the CA integration tests share: the clock origin and the CA settings.

use chrono::{DateTime, Duration, Utc};
use trustdeck_server::ca::CaSettings;
use trustdeck_spiffe::TrustDomain;

pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000 + s, 0).expect("time")
}

pub fn settings() -> CaSettings {
    CaSettings {
        trust_domain: TrustDomain::parse("example.org").expect("td"),
        ca_ttl: Duration::seconds(600),
        ca_common_name: "test CA".into(),
        jwt_key_ttl: Duration::seconds(600),
        upstream: None,
        owner_session: "test".into(),
        took_over: false,
        replace_lost_keys: None,
        actor: "server:spiffe://example.org/trustdeck/server".into(),
    }
}
