-- Signed checkpoints of the audit hash chain: the server's CA key signed that the chain's head
-- was `seq` with `hash` at `at` (see `chain.rs`, `checkpoint_bytes`). A log cut off after a
-- checkpoint, even with `audit_head` moved back, no longer reaches it. `signer` is the key's
-- SubjectPublicKeyInfo DER and `signature` the signature, both hex.
CREATE TABLE audit_checkpoints (
    seq BIGINT NOT NULL PRIMARY KEY,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    signer TEXT NOT NULL,
    signature TEXT NOT NULL
);
