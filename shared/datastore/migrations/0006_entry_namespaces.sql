-- Downstream namespaces: the SPIFFE ID path prefixes (each starting and ending with '/') a
-- downstream entry's server may issue under, as a JSON array of strings. Empty ('[]') on
-- entries that are not downstream, and on downstream entries made before this migration
-- (their namespaces are derived from their SPIFFE ID when read by the server).
ALTER TABLE registration_entries ADD COLUMN namespaces TEXT NOT NULL DEFAULT '[]';
