-- Products the vendor registered (`optin-collector product add`): only they
-- get releases and are named anywhere public. `first_week` is the first ISO
-- week released for the product; `versions` the registered product versions
-- (comma-separated), the only ones with a cell of their own.
CREATE TABLE products (
    name TEXT PRIMARY KEY,
    first_week TEXT NOT NULL,
    versions TEXT NOT NULL
) WITHOUT ROWID;

-- Weekly differentially private releases (release.rs), computed once and
-- never again: `body` is the release as JSON, NULL while a process holds the
-- claim (until `claimed_until`, unix seconds) and computes it.
CREATE TABLE releases (
    product TEXT NOT NULL,
    week TEXT NOT NULL,
    body TEXT,
    claimed_until INTEGER NOT NULL,
    PRIMARY KEY (product, week)
) WITHOUT ROWID;

-- Published figures come from releases only; the suppressed weekly
-- aggregates they replace are gone.
DROP TABLE aggregates;
DROP TABLE week_totals;
