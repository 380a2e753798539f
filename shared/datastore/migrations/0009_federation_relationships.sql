-- Federation relationships: which partner trust domains we fetch a bundle from, and how.
--
-- `profile` is a stable name, `https_web` (the endpoint's Web PKI certificate, checked by DNS
-- name against the system's CAs or `ca_file`) or `https_spiffe` (the endpoint's X509-SVID,
-- which must be `endpoint_spiffe_id`, checked against our copy of the partner's bundle in
-- `foreign_bundles`). The refresh columns say how the last fetches went: `failures` counts
-- the failures since the last success; `last_error` is the last failure's message (NULL once
-- a fetch succeeds).
CREATE TABLE federation_relationships (
    trust_domain TEXT NOT NULL PRIMARY KEY,
    endpoint_url TEXT NOT NULL,
    profile TEXT NOT NULL,
    endpoint_spiffe_id TEXT,
    ca_file TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_success_at BIGINT,
    last_error TEXT,
    failures BIGINT NOT NULL DEFAULT 0
);
