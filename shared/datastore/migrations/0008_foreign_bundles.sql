-- Bundles of other trust domains, and what other trust domains acknowledged of ours.
--
-- `foreign_bundles`: the last accepted SPIFFE bundle (JSON, as in `bundles`) of each foreign
-- trust domain, whichever way it came: `source` is a stable name, `import` (a signed bundle
-- file carried by hand, `bundle import`) or `federation` (fetched from the partner's bundle
-- endpoint). `sequence` is the bundle's own; writers only replace the row they read
-- (compare-and-set on `sequence`), so two imports never interleave.
CREATE TABLE foreign_bundles (
    trust_domain TEXT NOT NULL PRIMARY KEY,
    document TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- `bundle_receipts`: the last signed receipt each peer trust domain sent back: it holds
-- `sequence` of our bundle, whose roots are `roots` (JSON array of SHA-256 hex fingerprints).
CREATE TABLE bundle_receipts (
    peer_trust_domain TEXT NOT NULL PRIMARY KEY,
    sequence BIGINT NOT NULL,
    roots TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
