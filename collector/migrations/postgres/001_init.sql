-- See migrations/sqlite/001_init.sql for what each table is for.
CREATE TABLE schemas (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);

-- The heap keeps rows roughly in insertion order; purge rewrites the table
-- in report_id order (CLUSTER), which also leaves no deleted tuples behind.
CREATE TABLE reports (
    report_id BYTEA PRIMARY KEY,
    week TEXT NOT NULL,
    schema_id BIGINT NOT NULL,
    os_family TEXT NOT NULL,
    os_version TEXT NOT NULL,
    arch TEXT NOT NULL,
    product TEXT NOT NULL,
    product_version TEXT NOT NULL,
    library_version TEXT NOT NULL,
    codes TEXT NOT NULL
);
CREATE INDEX reports_week ON reports (week, schema_id);

CREATE TABLE quarantine (
    qkey BYTEA PRIMARY KEY,
    digest TEXT NOT NULL,
    week TEXT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX quarantine_digest ON quarantine (digest);

CREATE TABLE aggregates (
    week TEXT NOT NULL,
    schema_id BIGINT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (week, schema_id, field, value)
);

CREATE TABLE week_totals (
    week TEXT NOT NULL,
    schema_id BIGINT NOT NULL,
    reports BIGINT NOT NULL,
    PRIMARY KEY (week, schema_id)
);
