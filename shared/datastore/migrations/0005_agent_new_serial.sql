-- Agent SVID serial binding (SPIRE's `serial_number` / `new_serial_number`): a renewal writes
-- only the new SVID's serial and expiry here; the first call made with that SVID promotes it
-- to `cert_serial` / `cert_not_after` and clears these. A call with any other serial is
-- refused. NULL: no renewal is pending.
ALTER TABLE attested_nodes ADD COLUMN new_cert_serial TEXT;
ALTER TABLE attested_nodes ADD COLUMN new_cert_not_after BIGINT;
