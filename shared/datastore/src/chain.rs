//! The audit log's hash chain, pure: how a record's hash is computed and how a stored chain is
//! checked. No I/O; the datastore reads the rows and hands them here.

use std::fmt;

use ring::digest::{Context, SHA256};

use crate::audit::AuditRecord;

/// The `prev_hash` of the first record (seq 1): 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tells this encoding from any other SHA-256 input, and leaves room for a next version.
const DOMAIN: &[u8] = b"trustdeck audit chain v1\0";

/// One record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    /// Its place: 1 for the first record, then without gaps.
    pub seq: i64,
    /// The hash of the record before it ([`GENESIS`] for seq 1), hex.
    pub prev_hash: String,
    /// [`link_hash`] of this record, hex.
    pub hash: String,
    pub record: AuditRecord,
}

/// The chain's head as the datastore keeps it: the last seq and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// SHA-256, hex, over an unambiguous encoding: a domain tag, then seq and `at` as 8 bytes
/// big-endian, and every text (prev_hash, id, actor, action, target, detail, outcome) as its
/// length in 8 bytes big-endian followed by its UTF-8 bytes.
pub fn link_hash(seq: i64, prev_hash: &str, r: &AuditRecord) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(DOMAIN);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&r.at.to_be_bytes());
    for text in [
        prev_hash, &r.id, &r.actor, &r.action, &r.target, &r.detail, &r.outcome,
    ] {
        ctx.update(&(text.len() as u64).to_be_bytes());
        ctx.update(text.as_bytes());
    }
    hex::encode(ctx.finish().as_ref())
}

/// The next link after `head` for `record`.
pub fn next_link(head: &ChainHead, record: &AuditRecord) -> ChainedRecord {
    let seq = head.seq + 1;
    ChainedRecord {
        seq,
        prev_hash: head.hash.clone(),
        hash: link_hash(seq, &head.hash, record),
        record: record.clone(),
    }
}

/// The first thing wrong with a stored chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// No record holds this seq, and a later one does (deleted, or its seq changed).
    Missing { seq: i64 },
    /// The record at `seq` does not hash to its stored hash: a field was changed.
    Edited { seq: i64 },
    /// The record stored at `seq` hashes correctly only at `belongs_at`: records were moved.
    OutOfOrder { seq: i64, belongs_at: i64 },
    /// The record at `seq` hashes correctly but names another record before it than the one
    /// stored there (a record before it was replaced together with its hash).
    Unlinked { seq: i64 },
    /// The log ends at `last` (0: empty) but its head says `head` records were written.
    Truncated { last: i64, head: i64 },
    /// The last record is `seq` as the head says, with another hash than the head's.
    HeadMismatch { seq: i64 },
}

impl ChainBreak {
    /// The seq of the first bad record (for a truncation, the first missing one).
    pub fn seq(&self) -> i64 {
        match self {
            ChainBreak::Missing { seq }
            | ChainBreak::Edited { seq }
            | ChainBreak::OutOfOrder { seq, .. }
            | ChainBreak::Unlinked { seq }
            | ChainBreak::HeadMismatch { seq } => *seq,
            ChainBreak::Truncated { last, .. } => last + 1,
        }
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Missing { seq } => write!(f, "record {seq} is missing"),
            ChainBreak::Edited { seq } => {
                write!(f, "record {seq} was edited: it does not match its hash")
            }
            ChainBreak::OutOfOrder { seq, belongs_at } => write!(
                f,
                "record {seq} is out of order: it is the record written as {belongs_at}"
            ),
            ChainBreak::Unlinked { seq } => write!(
                f,
                "record {seq} does not follow the record stored before it (that one was replaced)"
            ),
            ChainBreak::Truncated { last, head } => write!(
                f,
                "the log was truncated: it ends at record {last}, but {head} were written"
            ),
            ChainBreak::HeadMismatch { seq } => {
                write!(f, "record {seq} is not the last record the head names")
            }
        }
    }
}

/// Checks `records` (ordered by seq, as stored) from the genesis, then that they reach
/// `head`. Returns how many records were checked, or the first break.
pub fn verify(records: &[ChainedRecord], head: &ChainHead) -> Result<i64, ChainBreak> {
    let mut prev = GENESIS;
    for (i, c) in records.iter().enumerate() {
        let expected = i as i64 + 1;
        if c.seq != expected {
            return Err(ChainBreak::Missing { seq: expected });
        }
        if link_hash(c.seq, &c.prev_hash, &c.record) != c.hash {
            return Err(misplaced(c, records).unwrap_or(ChainBreak::Edited { seq: c.seq }));
        }
        if c.prev_hash != prev {
            return Err(ChainBreak::Unlinked { seq: c.seq });
        }
        prev = &c.hash;
    }
    let last = records.len() as i64;
    if last < head.seq {
        return Err(ChainBreak::Truncated {
            last,
            head: head.seq,
        });
    }
    if last > head.seq || (last > 0 && prev != head.hash) {
        return Err(ChainBreak::HeadMismatch { seq: last });
    }
    Ok(last)
}

/// `c` hashes correctly under another seq of the log: it was moved there.
fn misplaced(c: &ChainedRecord, records: &[ChainedRecord]) -> Option<ChainBreak> {
    records
        .iter()
        .map(|other| other.seq)
        .filter(|&s| s != c.seq)
        .find(|&s| link_hash(s, &c.prev_hash, &c.record) == c.hash)
        .map(|belongs_at| ChainBreak::OutOfOrder {
            seq: c.seq,
            belongs_at,
        })
}

/// Tells a checkpoint's signed bytes from any other signed input.
const CHECKPOINT_DOMAIN: &[u8] = b"trustdeck audit checkpoint v1\0";

/// A signed statement that the chain's head was `seq` with `hash` at `at`: records cut off
/// after it was signed can no longer go unnoticed, even with the head moved back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    /// The hash of the record at `seq`, hex.
    pub hash: String,
    /// When it was signed (unix seconds).
    pub at: i64,
    /// The signer's public key, SubjectPublicKeyInfo DER.
    pub signer: Vec<u8>,
    /// The signature over [`checkpoint_bytes`].
    pub signature: Vec<u8>,
}

/// What a checkpoint signs: a domain tag, seq and `at` as 8 bytes big-endian, then the hash
/// and the signer's key each as its length in 8 bytes big-endian followed by its bytes.
pub fn checkpoint_bytes(seq: i64, hash: &str, at: i64, signer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 32 + hash.len() + signer.len());
    out.extend_from_slice(CHECKPOINT_DOMAIN);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    for bytes in [hash.as_bytes(), signer] {
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

impl Checkpoint {
    /// The bytes its signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        checkpoint_bytes(self.seq, &self.hash, self.at, &self.signer)
    }
}

/// The first checkpoint the log does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointBreak {
    /// Its signature does not verify with a known CA key: forged or altered.
    BadSignature { seq: i64 },
    /// It names record `seq`, but the log ends at `last`: records were cut off after it.
    TruncatedAfter { seq: i64, last: i64 },
    /// The record at `seq` is missing or has another hash than the checkpoint signed.
    HashMismatch { seq: i64 },
}

impl CheckpointBreak {
    /// The seq of the checkpoint.
    pub fn seq(&self) -> i64 {
        match self {
            CheckpointBreak::BadSignature { seq }
            | CheckpointBreak::TruncatedAfter { seq, .. }
            | CheckpointBreak::HashMismatch { seq } => *seq,
        }
    }
}

impl fmt::Display for CheckpointBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointBreak::BadSignature { seq } => write!(
                f,
                "checkpoint {seq} has a bad signature (no known CA key signed it)"
            ),
            CheckpointBreak::TruncatedAfter { seq, last } => write!(
                f,
                "truncated after checkpoint {seq}: the log ends at record {last}"
            ),
            CheckpointBreak::HashMismatch { seq } => write!(
                f,
                "checkpoint {seq} does not match the record stored at {seq}"
            ),
        }
    }
}

/// Checks every checkpoint (in the order given) against `records` (ordered by seq):
/// its signature with `verify_sig`, then that its record is there with the hash it signed.
/// Returns how many checkpoints hold, or the first that does not.
pub fn verify_checkpoints(
    records: &[ChainedRecord],
    checkpoints: &[Checkpoint],
    verify_sig: impl Fn(&Checkpoint) -> bool,
) -> Result<usize, CheckpointBreak> {
    let last = records.last().map_or(0, |r| r.seq);
    for cp in checkpoints {
        if !verify_sig(cp) {
            return Err(CheckpointBreak::BadSignature { seq: cp.seq });
        }
        if cp.seq > last {
            return Err(CheckpointBreak::TruncatedAfter { seq: cp.seq, last });
        }
        let stored = records
            .binary_search_by_key(&cp.seq, |r| r.seq)
            .ok()
            .map(|i| &records[i].hash);
        if stored != Some(&cp.hash) {
            return Err(CheckpointBreak::HashMismatch { seq: cp.seq });
        }
    }
    Ok(checkpoints.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: i64) -> AuditRecord {
        AuditRecord {
            id: format!("id{n}"),
            at: 1_700_000_000 + n,
            actor: "uid:0".into(),
            action: "entry.create".into(),
            target: format!("entry-{n}"),
            detail: String::new(),
            outcome: "ok".into(),
        }
    }

    fn chain(n: i64) -> (Vec<ChainedRecord>, ChainHead) {
        let mut head = ChainHead {
            seq: 0,
            hash: GENESIS.into(),
        };
        let mut out = Vec::new();
        for i in 1..=n {
            let link = next_link(&head, &rec(i));
            head = ChainHead {
                seq: link.seq,
                hash: link.hash.clone(),
            };
            out.push(link);
        }
        (out, head)
    }

    #[test]
    fn an_untouched_chain_verifies_and_an_empty_one_too() {
        let (c, head) = chain(5);
        assert_eq!(verify(&c, &head), Ok(5));
        let (c, head) = chain(0);
        assert_eq!(verify(&c, &head), Ok(0));
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let a = AuditRecord {
            actor: "ab".into(),
            action: "c".into(),
            ..rec(1)
        };
        let b = AuditRecord {
            actor: "a".into(),
            action: "bc".into(),
            ..rec(1)
        };
        assert_ne!(link_hash(1, GENESIS, &a), link_hash(1, GENESIS, &b));
        assert_ne!(link_hash(1, GENESIS, &a), link_hash(2, GENESIS, &a));
    }

    #[test]
    fn an_edited_field_names_its_record() {
        let (mut c, head) = chain(5);
        c[2].record.detail = "nothing to see".into();
        assert_eq!(verify(&c, &head), Err(ChainBreak::Edited { seq: 3 }));
        let (mut c, head) = chain(5);
        c[1].record.at += 1;
        assert_eq!(verify(&c, &head), Err(ChainBreak::Edited { seq: 2 }));
    }

    #[test]
    fn a_deleted_middle_record_is_missing() {
        let (mut c, head) = chain(5);
        c.remove(1);
        assert_eq!(verify(&c, &head), Err(ChainBreak::Missing { seq: 2 }));
        assert_eq!(ChainBreak::Missing { seq: 2 }.seq(), 2);
    }

    #[test]
    fn swapped_records_are_out_of_order() {
        let (mut c, head) = chain(5);
        // Contents (hashes included) swapped, places kept.
        let (a, b) = (c[1].clone(), c[3].clone());
        c[1] = ChainedRecord { seq: 2, ..b };
        c[3] = ChainedRecord { seq: 4, ..a };
        assert_eq!(
            verify(&c, &head),
            Err(ChainBreak::OutOfOrder {
                seq: 2,
                belongs_at: 4
            })
        );
    }

    #[test]
    fn a_record_rehashed_in_place_breaks_the_next_link() {
        let (mut c, head) = chain(4);
        c[1].record.outcome = "error".into();
        c[1].hash = link_hash(2, &c[1].prev_hash, &c[1].record);
        assert_eq!(verify(&c, &head), Err(ChainBreak::Unlinked { seq: 3 }));
    }

    #[test]
    fn a_truncated_tail_is_found_against_the_head() {
        let (mut c, head) = chain(5);
        c.truncate(3);
        let found = verify(&c, &head);
        assert_eq!(found, Err(ChainBreak::Truncated { last: 3, head: 5 }));
        assert_eq!(found.unwrap_err().seq(), 4);
        assert_eq!(
            verify(&[], &head),
            Err(ChainBreak::Truncated { last: 0, head: 5 })
        );
    }

    #[test]
    fn a_replaced_last_record_does_not_match_the_head() {
        let (mut c, head) = chain(3);
        let forged = next_link(
            &ChainHead {
                seq: 2,
                hash: c[1].hash.clone(),
            },
            &AuditRecord {
                outcome: "forged".into(),
                ..rec(3)
            },
        );
        c[2] = forged;
        assert_eq!(verify(&c, &head), Err(ChainBreak::HeadMismatch { seq: 3 }));
    }
    fn checkpoint_at(c: &[ChainedRecord], seq: i64) -> Checkpoint {
        Checkpoint {
            seq,
            hash: c[seq as usize - 1].hash.clone(),
            at: 1_800_000_000,
            signer: b"key".to_vec(),
            signature: b"good".to_vec(),
        }
    }

    fn good_sig(cp: &Checkpoint) -> bool {
        cp.signature == b"good"
    }

    #[test]
    fn checkpoints_of_an_untouched_log_hold() {
        let (c, _) = chain(5);
        let cps = [checkpoint_at(&c, 2), checkpoint_at(&c, 5)];
        assert_eq!(verify_checkpoints(&c, &cps, good_sig), Ok(2));
        assert_eq!(verify_checkpoints(&c, &[], good_sig), Ok(0));
    }

    #[test]
    fn a_log_cut_after_a_checkpoint_is_truncated_after_it() {
        let (mut c, _) = chain(5);
        let cps = [checkpoint_at(&c, 2), checkpoint_at(&c, 4)];
        c.truncate(3);
        let found = verify_checkpoints(&c, &cps, good_sig);
        assert_eq!(
            found,
            Err(CheckpointBreak::TruncatedAfter { seq: 4, last: 3 })
        );
        assert_eq!(
            found.unwrap_err().to_string(),
            "truncated after checkpoint 4: the log ends at record 3"
        );
        assert_eq!(
            verify_checkpoints(&[], &cps, good_sig),
            Err(CheckpointBreak::TruncatedAfter { seq: 2, last: 0 })
        );
    }

    #[test]
    fn a_bad_signature_is_found_before_anything_else() {
        let (c, _) = chain(3);
        let mut cp = checkpoint_at(&c, 3);
        cp.signature = b"forged".to_vec();
        cp.seq = 9;
        assert_eq!(
            verify_checkpoints(&c, &[cp], good_sig),
            Err(CheckpointBreak::BadSignature { seq: 9 })
        );
    }

    #[test]
    fn a_rewritten_record_under_a_checkpoint_does_not_match_it() {
        let (mut c, _) = chain(4);
        let cps = [checkpoint_at(&c, 3)];
        c[2].hash = "f".repeat(64);
        assert_eq!(
            verify_checkpoints(&c, &cps, good_sig),
            Err(CheckpointBreak::HashMismatch { seq: 3 })
        );
        let (mut c, _) = chain(4);
        c.remove(2);
        assert_eq!(
            verify_checkpoints(&c, &cps, good_sig),
            Err(CheckpointBreak::HashMismatch { seq: 3 })
        );
    }

    #[test]
    fn the_signed_bytes_bind_every_field() {
        let base = checkpoint_bytes(3, "ab", 10, b"k");
        assert_ne!(base, checkpoint_bytes(4, "ab", 10, b"k"));
        assert_ne!(base, checkpoint_bytes(3, "ab", 11, b"k"));
        assert_ne!(base, checkpoint_bytes(3, "abk", 10, b""));
        assert_ne!(base, checkpoint_bytes(3, "ab", 10, b"j"));
    }
}
