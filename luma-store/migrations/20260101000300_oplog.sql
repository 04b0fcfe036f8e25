-- Local writes append their pending op to a log instead of inserting it into the keyed
-- outbox. `sync_oplog` is a rowid table, so an append always lands on its last page: one page
-- write per local write, where the keyed outbox (random keys) cost about two plus the clock row.
-- The store folds the log into `sync_outbox` (collapsing repeated edits of one record) before
-- anything reads or settles ops, inside the same transaction.
--
-- The log's last row also carries the device clock: its `hlc` is the newest stamp handed out
-- or merged (stamps are appended in increasing order). Folding leaves that row behind as a
-- `floor` marker, and merging a newer remote stamp appends one. `seq` numbers ops: never
-- reused, since the last row is never deleted. `sync_clock` keeps the site id; its stamp
-- columns are superseded by this table.
CREATE TABLE sync_oplog (
    seq     INTEGER PRIMARY KEY,
    tbl     TEXT NOT NULL,
    pk      TEXT NOT NULL,
    hlc     TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('upsert', 'delete', 'floor')),
    user_id TEXT
);

INSERT INTO sync_oplog (seq, tbl, pk, hlc, kind, user_id)
SELECT next_op, '', '', printf('%015d-%06d-%s', physical, counter, site), 'floor', NULL
FROM sync_clock WHERE id = 1;
