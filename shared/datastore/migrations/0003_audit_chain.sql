-- The audit log as a hash chain. Each record written from now on carries its place (`seq`,
-- from 1 without gaps), the hash of the record before it (`prev_hash`; for seq 1 the genesis,
-- 64 zeros) and its own `hash` (see `chain.rs` for the encoding). Records written before this
-- migration keep seq NULL: they are outside the chain, which starts at the first new record.
ALTER TABLE audit_log ADD COLUMN seq BIGINT;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
-- Two appends can never take the same place (NULLs, the unchained records, are distinct).
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

-- The chain's head: the last seq and its hash, one row. An append updates it first, so
-- concurrent appends queue on its row lock (PostgreSQL) or the write lock (SQLite) and each
-- reads the head the one before it committed.
CREATE TABLE audit_head (
    id TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES ('audit', 0, '0000000000000000000000000000000000000000000000000000000000000000');
