-- Parked rows: pulled rows the store could not apply when they arrived (a value it cannot
-- store or decode, a stamp too far ahead of the device clock; later also a missing parent or
-- a unique clash). A row is parked in the same transaction as the rest of its page and the
-- cursor advance, so the cursor never moves past a row that is neither applied nor parked.
-- Parked rows are re-tried at the end of every pull and replaced by a newer version (or
-- tombstone) of the same key. `row` is the pulled row's JSON (NULL for a tombstone),
-- `reason_code` a stable code (`clock_skew`, `invalid`, ...), `reason` a message for people,
-- `parked_at` milliseconds since the epoch.
CREATE TABLE sync_parked (
    tbl         TEXT NOT NULL,
    pk          TEXT NOT NULL,
    hlc         TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    row         TEXT,
    reason_code TEXT NOT NULL,
    reason      TEXT NOT NULL,
    parked_at   INTEGER NOT NULL,
    PRIMARY KEY (tbl, pk)
) WITHOUT ROWID;
