-- Running counts of the quarantine, updated in the same transaction as
-- every insert into and delete from it: checking the caps for a new body
-- reads two rows of this table instead of summing every quarantined body.
-- One row per quarantined digest, and the row with digest '' (no digest is
-- empty) for all of them together.
CREATE TABLE quarantine_counts (
    digest TEXT PRIMARY KEY,
    reports INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO quarantine_counts (digest, reports, bytes)
    SELECT digest, count(*), sum(length(body)) FROM quarantine GROUP BY digest;
INSERT INTO quarantine_counts (digest, reports, bytes)
    SELECT '', count(*), coalesce(sum(length(body)), 0) FROM quarantine;
