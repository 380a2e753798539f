-- Who owns the CA journal: one server instance per datastore, with a lease it renews while
-- it runs. Until several servers per tier are designed, no other server rewrites CA state.
CREATE TABLE ca_owner (
    -- Always 'ca': one owner per datastore.
    id TEXT NOT NULL PRIMARY KEY,
    -- The owner's instance id, kept in its data directory.
    instance_id TEXT NOT NULL,
    -- Random per process start: tells two live processes of one instance apart.
    session TEXT NOT NULL,
    server_id TEXT NOT NULL,
    host TEXT NOT NULL,
    data_dir TEXT NOT NULL,
    key_manager TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    -- Unix seconds until which the owner is taken to be running (0: stopped cleanly).
    lease_until BIGINT NOT NULL
);
