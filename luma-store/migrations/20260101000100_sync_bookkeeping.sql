-- Local-only sync bookkeeping. None of these tables ever leaves the device.

-- The device's hybrid logical clock. `site` is chosen at random when the database is created.
-- `next_op` numbers pending ops (never reused); it lives here because the outbox triggers
-- update this row anyway, so numbering costs no extra page write.
CREATE TABLE sync_clock (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    physical INTEGER NOT NULL DEFAULT 0,
    counter  INTEGER NOT NULL DEFAULT 0,
    site     TEXT NOT NULL CHECK (length(site) = 16),
    next_op  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO sync_clock (id, physical, counter, site)
VALUES (1, 0, 0, lower(hex(randomblob(8))));

-- Who is signed in on this device (the user local writes are attributed to).
CREATE TABLE sync_identity (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    user_id TEXT
);
INSERT INTO sync_identity (id, user_id) VALUES (1, NULL);

-- The outbox: one pending op per record (repeated edits collapse into it). One B-tree keyed by
-- the record (WITHOUT ROWID, no secondary index) keeps a write's outbox cost to one page.
CREATE TABLE sync_outbox (
    tbl           TEXT NOT NULL,
    pk            TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    hlc           TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('upsert', 'delete')),
    user_id       TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    rejected      INTEGER NOT NULL DEFAULT 0,
    next_retry_ms INTEGER,
    PRIMARY KEY (tbl, pk)
) WITHOUT ROWID;

-- Non-empty only inside a transaction that applies pulled rows: the outbox triggers stay
-- silent while it holds a row. It is emptied before that transaction commits.
CREATE TABLE sync_apply_guard (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);

-- Pull cursors, per user and table (opaque text chosen by the remote).
CREATE TABLE sync_cursors (
    user_id TEXT NOT NULL,
    tbl     TEXT NOT NULL,
    cursor  TEXT NOT NULL,
    PRIMARY KEY (user_id, tbl)
);

-- Plugin tables' own migrations (the core migrations are tracked by sqlx).
CREATE TABLE luma_plugin_migrations (
    id         TEXT PRIMARY KEY NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
