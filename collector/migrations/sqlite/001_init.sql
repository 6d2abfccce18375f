-- Registered schemas, by digest; `body` is the schema JSON as the vendor
-- gave it (descriptions included, for labels).
CREATE TABLE schemas (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);

-- Raw reports. Keyed by the random report id and WITHOUT ROWID, so neither
-- a rowid nor the key order follows arrival order. `week` is the ISO week of
-- receipt, the only time kept. `codes` holds the schema fields (see
-- privacy.rs); built-ins are columns so they group in SQL.
CREATE TABLE reports (
    report_id BLOB PRIMARY KEY,
    week TEXT NOT NULL,
    schema_id INTEGER NOT NULL,
    os_family TEXT NOT NULL,
    os_version TEXT NOT NULL,
    arch TEXT NOT NULL,
    product TEXT NOT NULL,
    product_version TEXT NOT NULL,
    library_version TEXT NOT NULL,
    codes TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX reports_week ON reports (week, schema_id);

-- Reports for digests not (yet) registered, verbatim; random key.
CREATE TABLE quarantine (
    qkey BLOB PRIMARY KEY,
    digest TEXT NOT NULL,
    week TEXT NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX quarantine_digest ON quarantine (digest);

-- Weekly aggregates; they outlive the raw reports.
CREATE TABLE aggregates (
    week TEXT NOT NULL,
    schema_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (week, schema_id, field, value)
) WITHOUT ROWID;

-- Reports per week and schema; a row here also marks the week as rolled up.
CREATE TABLE week_totals (
    week TEXT NOT NULL,
    schema_id INTEGER NOT NULL,
    reports INTEGER NOT NULL,
    PRIMARY KEY (week, schema_id)
) WITHOUT ROWID;
