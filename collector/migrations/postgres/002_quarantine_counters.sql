-- See migrations/sqlite/002_quarantine_counters.sql: running counts of the
-- quarantine per digest, and under digest '' for all of them together.
CREATE TABLE quarantine_counts (
    digest TEXT PRIMARY KEY,
    reports BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
INSERT INTO quarantine_counts (digest, reports, bytes)
    SELECT digest, count(*), sum(length(body))::BIGINT FROM quarantine GROUP BY digest;
INSERT INTO quarantine_counts (digest, reports, bytes)
    SELECT '', count(*), coalesce(sum(length(body)), 0)::BIGINT FROM quarantine;
