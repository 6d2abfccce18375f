-- Oblivious HTTP gateway keys (`optin-collector ohttp keygen|list|retire`).
-- `ikm` is the 32-byte secret the X25519 key pair is derived from (HPKE
-- DeriveKeyPair); NULL once the key is retired, so a retired key can never
-- open a request again. `key_id` (0-255) is never reused.
CREATE TABLE ohttp_keys (
    key_id INTEGER PRIMARY KEY,
    created_week TEXT NOT NULL,
    ikm BLOB
) WITHOUT ROWID;

-- Reports stored that came through the gateway, per ISO week: an exact
-- operational counter like /metrics; nothing per report records its route.
CREATE TABLE gateway_weeks (
    week TEXT PRIMARY KEY,
    reports INTEGER NOT NULL
) WITHOUT ROWID;
