-- The foreign trust domains whose bundles an entry's workloads receive (`federates_with`), as
-- a sorted JSON array of trust domain names. Empty ('[]') on entries made before this
-- migration: they federate with nothing, as before.
ALTER TABLE registration_entries ADD COLUMN federates_with TEXT NOT NULL DEFAULT '[]';
