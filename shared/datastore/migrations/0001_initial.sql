-- trustdeck datastore schema, version 1.
--
-- Portable SQL shared by SQLite and PostgreSQL: only the column types TEXT and
-- BIGINT are used. Booleans are BIGINT 0/1, timestamps are BIGINT unix seconds,
-- binary data is stored as text (PEM or base64), lists are JSON arrays in TEXT.

CREATE TABLE registration_entries (
    id TEXT NOT NULL PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    -- JSON array of "type:value" strings, sorted and de-duplicated.
    selectors TEXT NOT NULL,
    x509_ttl_secs BIGINT NOT NULL,
    jwt_ttl_secs BIGINT NOT NULL,
    downstream BIGINT NOT NULL,
    -- JSON array of DNS names, in the order given.
    dns_names TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- An entry is identified by its SPIFFE ID, parent and selector set.
CREATE UNIQUE INDEX registration_entries_identity
    ON registration_entries (spiffe_id, parent_id, selectors);

CREATE INDEX registration_entries_parent_id
    ON registration_entries (parent_id);

CREATE TABLE attested_nodes (
    spiffe_id TEXT NOT NULL PRIMARY KEY,
    attestation_type TEXT NOT NULL,
    cert_serial TEXT NOT NULL,
    cert_not_after BIGINT NOT NULL,
    banned BIGINT NOT NULL,
    -- JSON array of "type:value" strings.
    selectors TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE join_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE bundles (
    trust_domain TEXT NOT NULL PRIMARY KEY,
    sequence BIGINT NOT NULL,
    -- SPIFFE bundle JSON document.
    document TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE ca_journal (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    key_backend TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    certificate_chain_pem TEXT,
    public_key_der_b64 TEXT,
    kid TEXT,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id TEXT NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
