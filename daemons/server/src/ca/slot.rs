//! The lifecycle both kinds of authority (X.509 CA, JWT key) go through, as SPIRE drives
//! them: pure, no I/O, `now` a parameter.
//!
//! Each kind has one [`Slot`]: the *active* authority, which signs, and at most one
//! *prepared* successor, already published in the bundle so that relying parties trust it
//! before it signs anything. [`decide`] schedules the steps: prepare at half the active
//! authority's life, activate when a sixth remains. A replaced authority becomes *old*:
//! trusted until it expires, then pruned ([`super::journal::prune`]). Each [`Transition`]
//! changes the slot and the CA journal together, so the journal always says what the slot
//! holds and a restart finds the same state.

use std::sync::Arc;

use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_pki::rotation::{Decision, Window, decide};

use super::events::{CaEvent, activated, prepared};
use super::journal::set_status;

/// An authority as the lifecycle sees it.
pub trait Authority {
    /// The kind of key, and of journal record, this is.
    const KIND: CaKind;

    /// When it may sign.
    fn window(&self) -> Window;

    /// Its key's reference in the key manager: the journal record's `key_ref`.
    fn key_ref(&self) -> &str;

    /// How events name it: `X.509 CA x509-…`, `JWT key 3f…`.
    fn describe(&self) -> String;

    /// Its node id on the admin stream (`x509:<key id>`, `jwt:<kid>`).
    fn node_id(&self) -> String;
}

/// One kind's signing slot.
#[derive(Debug)]
pub struct Slot<A> {
    /// The authority that signs.
    pub active: Option<Arc<A>>,
    /// Its successor, trusted (in the bundle) but not signing yet.
    pub prepared: Option<Arc<A>>,
}

impl<A> Default for Slot<A> {
    fn default() -> Self {
        Self {
            active: None,
            prepared: None,
        }
    }
}

impl<A> Clone for Slot<A> {
    fn clone(&self) -> Self {
        Self {
            active: self.active.clone(),
            prepared: self.prepared.clone(),
        }
    }
}

/// A freshly minted authority and its journal record (status `prepared`).
#[derive(Debug)]
pub struct Minted<A> {
    /// What the journal stores about it.
    pub record: CaJournalRecord,
    pub authority: Arc<A>,
}

/// One step of the lifecycle, with the minted authority (the I/O part) already in hand.
#[derive(Debug)]
pub enum Transition<A> {
    /// Publish a fresh successor; a prepared one that is no longer usable is replaced.
    Prepare(Minted<A>),
    /// Sign with a fresh authority at once: nothing usable was there (first start, or down
    /// for longer than the authorities lived).
    Replace(Minted<A>),
    /// Sign with the prepared successor; the active one becomes old.
    Activate,
}

impl<A: Authority> Slot<A> {
    /// What this slot needs at `now`.
    pub fn decide(&self, now: chrono::DateTime<chrono::Utc>) -> Decision {
        decide(
            now,
            self.active.as_ref().map(|a| a.window()),
            self.prepared.as_ref().map(|a| a.window()),
        )
    }

    /// Puts an authority read back from the journal where its status says; authorities
    /// that hold no slot (old, tainted, revoked) are left out.
    pub fn restore(&mut self, status: CaStatus, authority: Arc<A>) {
        match status {
            CaStatus::Active => self.active = Some(authority),
            CaStatus::Prepared => self.prepared = Some(authority),
            CaStatus::Old | CaStatus::Tainted | CaStatus::Revoked => {}
        }
    }

    /// The key references of the authorities in the slot.
    pub fn key_refs(&self) -> impl Iterator<Item = &str> {
        [&self.active, &self.prepared]
            .into_iter()
            .flatten()
            .map(|a| a.key_ref())
    }

    /// Applies `transition` to the slot and to `journal`; returns what happened.
    pub fn apply(
        &mut self,
        journal: &mut Vec<CaJournalRecord>,
        transition: Transition<A>,
    ) -> CaEvent {
        match transition {
            Transition::Prepare(minted) => {
                let name = minted.authority.describe();
                let node = minted.authority.node_id();
                self.prepare(journal, minted);
                CaEvent::new(
                    prepared(A::KIND),
                    format!("{name} prepared and published in the bundle"),
                    node,
                )
            }
            Transition::Replace(minted) => {
                let name = minted.authority.describe();
                let node = minted.authority.node_id();
                let until = minted.authority.window().not_after;
                self.prepare(journal, minted);
                self.activate(journal);
                CaEvent::new(
                    activated(A::KIND),
                    format!("new {name} minted and activated (valid until {until})"),
                    node,
                )
            }
            Transition::Activate => {
                let name = self.prepared.as_ref().map(|a| a.describe());
                let node = self.prepared.as_ref().map(|a| a.node_id());
                self.activate(journal);
                CaEvent::new(
                    activated(A::KIND),
                    format!("prepared {} activated", name.unwrap_or_default()),
                    node.unwrap_or_default(),
                )
            }
        }
    }

    fn prepare(&mut self, journal: &mut Vec<CaJournalRecord>, minted: Minted<A>) {
        set_status(journal, A::KIND, CaStatus::Prepared, CaStatus::Old);
        journal.push(CaJournalRecord {
            status: CaStatus::Prepared,
            ..minted.record
        });
        self.prepared = Some(minted.authority);
    }

    fn activate(&mut self, journal: &mut [CaJournalRecord]) {
        set_status(journal, A::KIND, CaStatus::Active, CaStatus::Old);
        set_status(journal, A::KIND, CaStatus::Prepared, CaStatus::Active);
        self.active = self.prepared.take();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use trustdeck_proto::admin::EventKind;

    /// An authority with nothing but a window and a name.
    #[derive(Debug)]
    pub(crate) struct Fake {
        pub(crate) id: String,
        pub(crate) window: Window,
    }

    impl Authority for Fake {
        const KIND: CaKind = CaKind::X509;
        fn window(&self) -> Window {
            self.window
        }
        fn key_ref(&self) -> &str {
            &self.id
        }
        fn describe(&self) -> String {
            format!("fake {}", self.id)
        }
        fn node_id(&self) -> String {
            format!("x509:{}", self.id)
        }
    }

    /// The same, of the other kind.
    #[derive(Debug)]
    struct FakeJwt(Fake);

    impl Authority for FakeJwt {
        const KIND: CaKind = CaKind::Jwt;
        fn window(&self) -> Window {
            self.0.window
        }
        fn key_ref(&self) -> &str {
            &self.0.id
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn node_id(&self) -> String {
            format!("jwt:{}", self.0.id)
        }
    }

    pub(crate) fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + s, 0).expect("time")
    }

    /// A record as minting writes it: prepared.
    pub(crate) fn record(id: &str, kind: CaKind, window: Window) -> CaJournalRecord {
        CaJournalRecord {
            id: id.into(),
            kind,
            status: CaStatus::Prepared,
            key_backend: "memory".into(),
            key_ref: id.into(),
            certificate_chain_pem: None,
            public_key_der_b64: None,
            kid: None,
            not_before: window.not_before.timestamp(),
            not_after: window.not_after.timestamp(),
            created_at: window.not_before.timestamp(),
        }
    }

    /// Mints an authority valid for 600 s from `now`.
    fn mint(id: &str, now: DateTime<Utc>) -> Minted<Fake> {
        let window = Window::new(now, now + Duration::seconds(600));
        Minted {
            record: record(id, CaKind::X509, window),
            authority: Arc::new(Fake {
                id: id.into(),
                window,
            }),
        }
    }

    fn statuses(journal: &[CaJournalRecord]) -> Vec<(&str, CaStatus)> {
        journal.iter().map(|r| (r.id.as_str(), r.status)).collect()
    }

    /// Drives a slot the way the rotation loop does, minting `next-<n>` when asked.
    fn step(
        slot: &mut Slot<Fake>,
        journal: &mut Vec<CaJournalRecord>,
        now: DateTime<Utc>,
        n: &mut usize,
    ) -> Option<CaEvent> {
        let mut fresh = || {
            *n += 1;
            mint(&format!("ca-{n}"), now)
        };
        let transition = match slot.decide(now) {
            Decision::Idle { .. } => return None,
            Decision::Activate => Transition::Activate,
            Decision::Prepare => Transition::Prepare(fresh()),
            Decision::MintAndActivate => Transition::Replace(fresh()),
        };
        Some(slot.apply(journal, transition))
    }

    #[test]
    fn an_empty_slot_mints_and_activates_at_once() {
        let mut slot = Slot::<Fake>::default();
        let mut journal = Vec::new();
        assert_eq!(slot.decide(t(0)), Decision::MintAndActivate);
        let ev = slot.apply(&mut journal, Transition::Replace(mint("a", t(0))));
        assert_eq!(ev.kind, EventKind::X509Activated);
        assert!(
            ev.message.starts_with("new fake a minted and activated"),
            "{ev:?}"
        );
        assert_eq!(statuses(&journal), vec![("a", CaStatus::Active)]);
        assert_eq!(slot.active.as_ref().map(|a| a.id.as_str()), Some("a"));
        assert!(slot.prepared.is_none());
    }

    #[test]
    fn prepared_at_half_life_activated_at_five_sixths() {
        let mut slot = Slot::default();
        let mut journal = Vec::new();
        let mut n = 0;
        step(&mut slot, &mut journal, t(0), &mut n);
        assert_eq!(step(&mut slot, &mut journal, t(299), &mut n), None);

        let ev = step(&mut slot, &mut journal, t(300), &mut n).expect("prepare");
        assert_eq!(ev.kind, EventKind::X509Prepared);
        assert_eq!(ev.message, "fake ca-2 prepared and published in the bundle");
        assert_eq!(
            ev.node_id, "x509:ca-2",
            "the event names the authority's node"
        );
        assert_eq!(
            statuses(&journal),
            vec![("ca-1", CaStatus::Active), ("ca-2", CaStatus::Prepared)]
        );
        assert_eq!(slot.active.as_ref().map(|a| a.id.as_str()), Some("ca-1"));
        assert_eq!(step(&mut slot, &mut journal, t(499), &mut n), None);

        let ev = step(&mut slot, &mut journal, t(500), &mut n).expect("activate");
        assert_eq!(ev.kind, EventKind::X509Activated);
        assert_eq!(ev.message, "prepared fake ca-2 activated");
        assert_eq!(
            ev.node_id, "x509:ca-2",
            "the one activated, not the one retired"
        );
        assert_eq!(
            statuses(&journal),
            vec![("ca-1", CaStatus::Old), ("ca-2", CaStatus::Active)]
        );
        assert_eq!(slot.active.as_ref().map(|a| a.id.as_str()), Some("ca-2"));
        assert!(slot.prepared.is_none());
    }

    #[test]
    fn over_many_lifetimes_one_active_at_most_one_prepared() {
        let mut slot = Slot::default();
        let mut journal = Vec::new();
        let mut n = 0;
        let mut events = Vec::new();
        for s in (0..6_000).step_by(7) {
            events.extend(step(&mut slot, &mut journal, t(s), &mut n));
            let count = |st| journal.iter().filter(|r| r.status == st).count();
            assert_eq!(count(CaStatus::Active), 1, "at {s}: {journal:?}");
            assert!(count(CaStatus::Prepared) <= 1, "at {s}");
            let active = slot.active.as_ref().expect("active");
            assert!(
                active.window.contains(t(s)),
                "at {s}: signs only when valid"
            );
            let in_journal = |id: &str| journal.iter().find(|r| r.id == id).map(|r| r.status);
            assert_eq!(in_journal(&active.id), Some(CaStatus::Active));
            if let Some(p) = &slot.prepared {
                assert_eq!(in_journal(&p.id), Some(CaStatus::Prepared));
            }
        }
        // Each successor was prepared before it was needed: one mint-and-activate, the first.
        assert!(n > 10);
        let replaced = events.iter().filter(|e| e.message.starts_with("new "));
        assert_eq!(replaced.count(), 1, "{events:?}");
    }

    #[test]
    fn back_after_everything_expired_replaces_both() {
        let mut slot = Slot::default();
        let mut journal = Vec::new();
        let mut n = 0;
        step(&mut slot, &mut journal, t(0), &mut n);
        step(&mut slot, &mut journal, t(300), &mut n);
        assert_eq!(slot.decide(t(5_000)), Decision::MintAndActivate);
        let ev = step(&mut slot, &mut journal, t(5_000), &mut n).expect("replace");
        assert_eq!(ev.kind, EventKind::X509Activated);
        assert_eq!(
            statuses(&journal),
            vec![
                ("ca-1", CaStatus::Old),
                ("ca-2", CaStatus::Old),
                ("ca-3", CaStatus::Active)
            ]
        );
        assert!(slot.prepared.is_none());
    }

    #[test]
    fn a_prepared_successor_too_close_to_expiry_is_replaced() {
        let mut slot = Slot::default();
        let mut journal = Vec::new();
        slot.apply(&mut journal, Transition::Replace(mint("a", t(0))));
        // A successor minted long ago (restored from the journal), nearly expired.
        let stale = mint("stale", t(-400));
        journal.push(stale.record.clone());
        slot.restore(CaStatus::Prepared, stale.authority);
        assert_eq!(slot.decide(t(300)), Decision::Prepare);
        slot.apply(&mut journal, Transition::Prepare(mint("b", t(300))));
        assert_eq!(
            statuses(&journal),
            vec![
                ("a", CaStatus::Active),
                ("stale", CaStatus::Old),
                ("b", CaStatus::Prepared)
            ]
        );
        assert_eq!(slot.prepared.as_ref().map(|a| a.id.as_str()), Some("b"));
    }

    #[test]
    fn transitions_leave_the_other_kind_and_distrusted_records_alone() {
        let mut slot = Slot::default();
        let w = Window::new(t(0), t(600));
        let mut journal = vec![
            CaJournalRecord {
                status: CaStatus::Active,
                ..record("jwt-a", CaKind::Jwt, w)
            },
            CaJournalRecord {
                status: CaStatus::Prepared,
                ..record("jwt-p", CaKind::Jwt, w)
            },
            CaJournalRecord {
                status: CaStatus::Tainted,
                ..record("tainted", CaKind::X509, w)
            },
            CaJournalRecord {
                status: CaStatus::Revoked,
                ..record("revoked", CaKind::X509, w)
            },
        ];
        slot.apply(&mut journal, Transition::Replace(mint("x", t(0))));
        assert_eq!(
            statuses(&journal),
            vec![
                ("jwt-a", CaStatus::Active),
                ("jwt-p", CaStatus::Prepared),
                ("tainted", CaStatus::Tainted),
                ("revoked", CaStatus::Revoked),
                ("x", CaStatus::Active),
            ]
        );

        let mut jwt = Slot::<FakeJwt>::default();
        jwt.restore(
            CaStatus::Prepared,
            Arc::new(FakeJwt(Fake {
                id: "jwt-p".into(),
                window: w,
            })),
        );
        let ev = jwt.apply(&mut journal, Transition::Activate);
        assert_eq!(ev.kind, EventKind::JwtActivated);
        assert_eq!(ev.node_id, "jwt:jwt-p");
        assert_eq!(
            statuses(&journal),
            vec![
                ("jwt-a", CaStatus::Old),
                ("jwt-p", CaStatus::Active),
                ("tainted", CaStatus::Tainted),
                ("revoked", CaStatus::Revoked),
                ("x", CaStatus::Active),
            ]
        );
    }

    #[test]
    fn restore_puts_only_live_authorities_in_the_slot() {
        let w = Window::new(t(0), t(600));
        let fake = |id: &str| {
            Arc::new(Fake {
                id: id.into(),
                window: w,
            })
        };
        let mut slot = Slot::default();
        for (id, status) in [
            ("old", CaStatus::Old),
            ("tainted", CaStatus::Tainted),
            ("revoked", CaStatus::Revoked),
            ("a", CaStatus::Active),
            ("p", CaStatus::Prepared),
        ] {
            slot.restore(status, fake(id));
        }
        assert_eq!(slot.key_refs().collect::<Vec<_>>(), vec!["a", "p"]);
    }
}
