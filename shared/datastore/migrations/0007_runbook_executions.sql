-- The runbook execution journal (`trustdeck runbook`): who began which runbook on which
-- target, where it stands and what its steps saved, so that a session that drops loses
-- nothing. `state` and `phase` are stable names (`running`, `stopped`, `succeeded`,
-- `aborted`; `checking` ... `failed`); `inputs` and `saved` are JSON objects of strings.
-- At most one execution that is running or stopped holds a target (the partial unique index:
-- a second begin on a busy target cannot commit, whatever the order of two transactions).
CREATE TABLE runbook_executions (
    id TEXT NOT NULL PRIMARY KEY,
    runbook TEXT NOT NULL,
    target TEXT NOT NULL,
    started_by TEXT NOT NULL,
    held_by TEXT NOT NULL,
    session TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    step BIGINT NOT NULL,
    step_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    steps BIGINT NOT NULL,
    inputs TEXT NOT NULL,
    saved TEXT NOT NULL,
    reason TEXT NOT NULL,
    rolled_back BIGINT NOT NULL,
    runbook_digest TEXT NOT NULL
);
CREATE UNIQUE INDEX runbook_executions_holding
    ON runbook_executions (target) WHERE state IN ('running', 'stopped');
CREATE INDEX runbook_executions_updated ON runbook_executions (updated_at);
