//! Who may change the CA journal, pure: a server claims the journal at start and renews a
//! lease while it runs; a server of another instance, or a second live process of the same
//! one, is refused rather than let it rewrite CA state it does not own.

use chrono::{DateTime, Utc};
use trustdeck_datastore::CaOwner;

/// How long a claim stands without renewal: a process killed without a clean stop blocks a
/// restart of its own instance for at most this long.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// How often a running owner renews its lease.
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The server asking for the journal.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// Its instance id (from its data directory).
    pub instance_id: &'a str,
    /// Its persistent key manager holds every live key of the journal (the owner's key set):
    /// the same server with a new data directory.
    pub holds_owner_keys: bool,
    /// The owner's process is known not to run: the record names this host and this data
    /// directory, and nobody answers on its admin socket (a crash or `kill -9`): no need to
    /// wait for its lease. Counts only for an owner of this instance: containers share host
    /// names and default data directories.
    pub owner_gone: bool,
    /// The operator asked for `run --take-over-ca`.
    pub take_over: bool,
    /// It already waited once for the current lease to run out.
    pub waited: bool,
}

/// What a starting server does about the journal's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody owns the journal, or it is this server's own and no process runs it: claim it.
    Claim,
    /// The owner may be a process that just died: wait for its lease to run out, then decide
    /// again.
    WaitForLease { until: i64 },
    /// A live process holds the lease: two servers on one journal are refused.
    RefuseLive,
    /// Another server (another instance, another key set) owns the journal.
    RefuseForeign,
    /// Another server owned it, its lease ran out, and the operator asked to take over.
    TakeOver,
}

/// Decides for `me` against the current `owner` at `now`.
pub fn decide(owner: Option<&CaOwner>, me: Claimant<'_>, now: DateTime<Utc>) -> Decision {
    let Some(owner) = owner else {
        return Decision::Claim;
    };
    let own_instance = owner.instance_id == me.instance_id;
    // The owner's clock wrote `lease_until`; servers on one datastore keep their clocks in
    // step (NTP), and a lease of 15 s tolerates a few seconds of skew.
    let leased = owner.lease_until > now.timestamp() && !(me.owner_gone && own_instance);
    let same = own_instance || me.holds_owner_keys;
    match (same, leased) {
        (true, false) => Decision::Claim,
        (false, false) if me.take_over => Decision::TakeOver,
        (false, false) => Decision::RefuseForeign,
        (_, true) if me.waited => Decision::RefuseLive,
        (true, true) => Decision::WaitForLease {
            until: owner.lease_until,
        },
        (false, true) if me.take_over => Decision::WaitForLease {
            until: owner.lease_until,
        },
        (false, true) => Decision::RefuseForeign,
    }
}

/// The owner as an operator reads it, with the state of its lease at `now`.
pub fn describe(owner: &CaOwner, now: DateTime<Utc>) -> String {
    let at = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0).map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    };
    let lease = if owner.lease_until > now.timestamp() {
        format!("running: lease renewed at {}", at(owner.renewed_at))
    } else if owner.lease_until == 0 {
        format!("stopped cleanly after {}", at(owner.renewed_at))
    } else {
        format!("not heard from since {}", at(owner.renewed_at))
    };
    format!(
        "instance {} ({}, host {}, data_dir {}, keys {}; {lease})",
        owner.instance_id, owner.server_id, owner.host, owner.data_dir, owner.key_manager
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn owner(instance: &str, lease_until: i64) -> CaOwner {
        CaOwner {
            instance_id: instance.into(),
            session: "s1".into(),
            server_id: "spiffe://example.org/trustdeck/server".into(),
            host: "h".into(),
            data_dir: "/var/lib/a".into(),
            key_manager: "disk /var/lib/a/keys".into(),
            claimed_at: 0,
            renewed_at: lease_until - 15,
            lease_until,
        }
    }

    fn me(instance: &str) -> Claimant<'_> {
        Claimant {
            instance_id: instance,
            holds_owner_keys: false,
            owner_gone: false,
            take_over: false,
            waited: false,
        }
    }

    #[test]
    fn an_unowned_journal_or_a_stopped_own_instance_is_claimed() {
        assert_eq!(decide(None, me("a"), t(100)), Decision::Claim);
        assert_eq!(
            decide(Some(&owner("a", 0)), me("a"), t(100)),
            Decision::Claim
        );
        assert_eq!(
            decide(Some(&owner("a", 99)), me("a"), t(100)),
            Decision::Claim
        );
    }

    #[test]
    fn another_instance_is_refused_live_or_not() {
        assert_eq!(
            decide(Some(&owner("a", 0)), me("b"), t(100)),
            Decision::RefuseForeign
        );
        assert_eq!(
            decide(Some(&owner("a", 110)), me("b"), t(100)),
            Decision::RefuseForeign
        );
    }

    #[test]
    fn the_owners_key_set_counts_as_the_owner() {
        let holder = Claimant {
            holds_owner_keys: true,
            ..me("b")
        };
        assert_eq!(
            decide(Some(&owner("a", 0)), holder, t(100)),
            Decision::Claim
        );
    }

    #[test]
    fn a_live_lease_is_waited_for_once_then_refused() {
        let o = owner("a", 110);
        assert_eq!(
            decide(Some(&o), me("a"), t(100)),
            Decision::WaitForLease { until: 110 }
        );
        let waited = Claimant {
            waited: true,
            ..me("a")
        };
        assert_eq!(decide(Some(&o), waited, t(111)), Decision::Claim);
        let renewed = owner("a", 125);
        assert_eq!(decide(Some(&renewed), waited, t(111)), Decision::RefuseLive);
    }

    #[test]
    fn a_crashed_owner_on_this_host_and_data_dir_is_not_waited_for() {
        let gone = Claimant {
            owner_gone: true,
            ..me("a")
        };
        assert_eq!(
            decide(Some(&owner("a", 110)), gone, t(100)),
            Decision::Claim
        );
    }

    #[test]
    fn a_gone_owner_of_another_instance_is_still_waited_for() {
        let gone = Claimant {
            owner_gone: true,
            take_over: true,
            ..me("b")
        };
        assert_eq!(
            decide(Some(&owner("a", 110)), gone, t(100)),
            Decision::WaitForLease { until: 110 }
        );
        let holder = Claimant {
            holds_owner_keys: true,
            ..gone
        };
        assert_eq!(
            decide(Some(&owner("a", 110)), holder, t(100)),
            Decision::WaitForLease { until: 110 }
        );
    }

    #[test]
    fn the_loser_of_a_race_on_an_empty_journal_is_refused_when_deciding_again() {
        // Both saw no owner and decided to claim; the winner's claim is what the loser reads.
        assert_eq!(decide(None, me("b"), t(100)), Decision::Claim);
        let winner = owner("a", 115);
        assert_eq!(
            decide(Some(&winner), me("b"), t(100)),
            Decision::RefuseForeign
        );
        let taker = Claimant {
            take_over: true,
            waited: true,
            ..me("b")
        };
        assert_eq!(decide(Some(&winner), taker, t(101)), Decision::RefuseLive);
    }

    #[test]
    fn take_over_only_once_the_owner_is_not_running() {
        let taker = Claimant {
            take_over: true,
            ..me("b")
        };
        assert_eq!(
            decide(Some(&owner("a", 0)), taker, t(100)),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&owner("a", 110)), taker, t(100)),
            Decision::WaitForLease { until: 110 }
        );
        let after = Claimant {
            waited: true,
            ..taker
        };
        assert_eq!(
            decide(Some(&owner("a", 125)), after, t(111)),
            Decision::RefuseLive
        );
        assert_eq!(decide(None, taker, t(100)), Decision::Claim);
    }

    #[test]
    fn the_description_says_whether_the_owner_runs() {
        assert!(describe(&owner("a", 110), t(100)).contains("running"));
        assert!(describe(&owner("a", 0), t(100)).contains("stopped cleanly"));
        assert!(describe(&owner("a", 90), t(100)).contains("not heard from since"));
        assert!(describe(&owner("a", 0), t(100)).contains("instance a"));
    }
}
