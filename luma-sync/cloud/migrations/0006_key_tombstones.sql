-- Deletes of keys the server never had.
--
-- A record created and deleted on one device before it was pushed collapses into one delete op
-- of a key the server has never seen, while another device of the same user may still hold an
-- older write of that key (same key: a composite key such as a group membership, or a record
-- that reached both devices some other way). Until this migration such a delete stored
-- nothing, so the older write, pushed later, won: a lost delete. Now the delete is kept in
-- `luma.key_tombstones` and an older write of the key is answered "superseded" (deleted).
--
-- A kept delete counts for the user who made it only: nobody can pre-delete a key for another
-- user (a key another user could know has a row, and then the row's own rules apply). The
-- tombstones are not served by pull (no device can hold such a key without a pending op of its
-- own, which the push answers) and are purged with the other tombstones.
--
-- The set-based push path (`luma.push_run`) must send runs touching a kept key to the
-- per-change path, and `luma_push` takes a per-user lock so a kept delete and a first insert of
-- the key from another device cannot pass each other: both are in 0008, which redefines those
-- two functions (0006 and 0008 landed together, so they are not restated here).

CREATE TABLE luma.key_tombstones (
    uid        uuid NOT NULL,
    table_name text NOT NULL,
    key        text NOT NULL,
    hlc        text COLLATE "C" NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (uid, table_name, key)
);
CREATE INDEX key_tombstones_deleted_at ON luma.key_tombstones (deleted_at);
ALTER TABLE luma.key_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE luma.key_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY luma_own ON luma.key_tombstones FOR ALL TO authenticated
    USING (uid = (SELECT auth.uid())) WITH CHECK (uid = (SELECT auth.uid()));
GRANT SELECT, INSERT, UPDATE, DELETE ON luma.key_tombstones TO authenticated;
GRANT ALL ON luma.key_tombstones TO service_role;

CREATE OR REPLACE FUNCTION luma.apply_change(c jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    v_table text := c ->> 'table';
    v_key text := c ->> 'key';
    v_hlc text := c ->> 'hlc';
    v_op text := c ->> 'op';
    v_row jsonb := c -> 'row';
    v_parts text[];
    v_keyobj jsonb;
    cur record;
    v_found boolean;
    p jsonb;
    v_ok boolean;
    col text;
    n bigint;
    v_kt text;
BEGIN
    SELECT * INTO s FROM luma.sync_tables WHERE table_name = v_table;
    IF NOT FOUND THEN
        RETURN luma.rejected(c, 'invalid', format('unknown table %s', v_table));
    END IF;
    IF v_hlc IS NULL OR v_hlc !~ '^[0-9]{15}-[0-9]{6}-[0-9a-f]{16}$' THEN
        RETURN luma.rejected(c, 'invalid', 'hlc is not a stamp');
    END IF;
    IF v_key IS NULL OR v_op IS NULL OR v_op NOT IN ('upsert', 'delete') THEN
        RETURN luma.rejected(c, 'invalid', 'a change needs a key and op "upsert" or "delete"');
    END IF;
    IF cardinality(s.key_cols) = 1 THEN
        v_parts := ARRAY[v_key];
    ELSE
        BEGIN
            v_parts := ARRAY(SELECT jsonb_array_elements_text(v_key::jsonb));
        EXCEPTION WHEN others THEN
            RETURN luma.rejected(c, 'invalid', 'a composite key is a JSON array of strings');
        END;
        IF cardinality(v_parts) <> cardinality(s.key_cols) THEN
            RETURN luma.rejected(c, 'invalid', 'wrong number of key parts');
        END IF;
    END IF;
    SELECT jsonb_object_agg(k, v) INTO v_keyobj FROM unnest(s.key_cols, v_parts) AS u(k, v);

    IF v_op = 'upsert' THEN
        IF jsonb_typeof(v_row) IS DISTINCT FROM 'object' THEN
            RETURN luma.rejected(c, 'invalid', 'an upsert carries a row object');
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(s.key_cols, v_parts) AS u(k, v) WHERE v_row ->> k IS DISTINCT FROM v) THEN
            RETURN luma.rejected(c, 'invalid', 'the row''s key differs from the change''s key');
        END IF;
        FOREACH col IN ARRAY s.bytea_cols LOOP
            IF jsonb_typeof(v_row -> col) = 'string' THEN
                v_row := jsonb_set(v_row, ARRAY[col], to_jsonb('\x' || (v_row ->> col)));
            END IF;
        END LOOP;
    END IF;

    EXECUTE format('SELECT t.hlc, t.deleted_at IS NOT NULL AS deleted, %s AS row FROM %I.%I t WHERE %s FOR UPDATE',
                   s.row_expr, s.schema_name, s.table_name, s.key_match)
        INTO cur USING v_keyobj;
    GET DIAGNOSTICS n = ROW_COUNT;
    v_found := n > 0;

    IF v_found THEN
        IF cur.hlc = v_hlc COLLATE "C" THEN
            RETURN luma.outcome(c, 'applied');
        END IF;
        IF cur.hlc > v_hlc COLLATE "C" THEN
            RETURN luma.outcome(c, 'superseded') || jsonb_build_object(
                'hlc', cur.hlc, 'deleted', cur.deleted,
                'row', CASE WHEN cur.deleted THEN NULL ELSE cur.row END);
        END IF;
    ELSIF luma.row_exists(s.table_name, v_keyobj) THEN
        RETURN luma.rejected(c, 'forbidden', 'the row exists and is not writable by this user');
    ELSE
        -- Never had a row: this user's delete of the key may have been kept.
        SELECT kt.hlc INTO v_kt FROM luma.key_tombstones kt
        WHERE kt.uid = auth.uid() AND kt.table_name = v_table AND kt.key = v_key FOR UPDATE;
        IF FOUND THEN
            IF v_kt = v_hlc COLLATE "C" THEN
                RETURN luma.outcome(c, 'applied');
            END IF;
            IF v_kt > v_hlc COLLATE "C" THEN
                RETURN luma.outcome(c, 'superseded') || jsonb_build_object(
                    'hlc', v_kt, 'deleted', true, 'row', NULL);
            END IF;
        END IF;
    END IF;

    IF v_op = 'delete' THEN
        IF NOT v_found THEN
            -- A delete of a key the server never had: kept, so an older write of the key that
            -- arrives later loses to it (last writer wins).
            INSERT INTO luma.key_tombstones (uid, table_name, key, hlc)
            VALUES (auth.uid(), v_table, v_key, v_hlc)
            ON CONFLICT (uid, table_name, key) DO UPDATE
                SET hlc = excluded.hlc, deleted_at = now()
                WHERE luma.key_tombstones.hlc < excluded.hlc;
            RETURN luma.outcome(c, 'applied');
        END IF;
        EXECUTE format('UPDATE %I.%I t SET hlc = $2, deleted_at = coalesce(t.deleted_at, now()) WHERE %s',
                       s.schema_name, s.table_name, s.key_match) USING v_keyobj, v_hlc;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 0 THEN
            RETURN luma.rejected(c, 'forbidden', 'the row is not writable by this user');
        END IF;
        PERFORM luma.tombstone_children(s.table_name, v_keyobj, v_hlc);
        RETURN luma.outcome(c, 'applied');
    END IF;

    FOR p IN SELECT e FROM jsonb_array_elements(s.parents) e LOOP
        IF v_row ->> (p ->> 'column') IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I p WHERE p.%I = '
                           '(SELECT r.%I FROM jsonb_populate_record(NULL::%I.%I, $1) r) AND p.deleted_at IS NULL)',
                           p ->> 'schema', p ->> 'table', p ->> 'ref', p ->> 'column', s.schema_name, s.table_name)
                INTO v_ok USING v_row;
            IF NOT v_ok THEN
                RETURN luma.rejected(c, 'missing_parent',
                    format('%s %s is missing or deleted', p ->> 'table', v_row ->> (p ->> 'column')));
            END IF;
        END IF;
    END LOOP;

    IF v_found THEN
        EXECUTE s.update_sql USING v_keyobj, v_row, v_hlc;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 0 THEN
            RETURN luma.rejected(c, 'forbidden', 'the row is not writable by this user');
        END IF;
    ELSE
        EXECUTE s.insert_sql USING v_row, v_hlc;
        IF v_kt IS NOT NULL THEN
            DELETE FROM luma.key_tombstones kt
            WHERE kt.uid = auth.uid() AND kt.table_name = v_table AND kt.key = v_key;
        END IF;
    END IF;
    RETURN luma.outcome(c, 'applied');
END
$$;

CREATE OR REPLACE FUNCTION public.luma_purge_tombstones(p_horizon interval) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    n bigint;
    top record;
    counts jsonb := '{}';
BEGIN
    FOR s IN SELECT * FROM luma.sync_tables ORDER BY ord DESC LOOP
        EXECUTE format($q$
            WITH d AS (DELETE FROM %I.%I t WHERE t.deleted_at IS NOT NULL AND t.deleted_at < now() - $1
                       RETURNING t.change_xid, t.change_seq)
            SELECT (SELECT count(*) FROM d) AS n,
                   (SELECT change_xid FROM d ORDER BY change_xid DESC, change_seq DESC LIMIT 1) AS x,
                   (SELECT change_seq FROM d ORDER BY change_xid DESC, change_seq DESC LIMIT 1) AS q
        $q$, s.schema_name, s.table_name) INTO top USING p_horizon;
        n := top.n;
        IF n > 0 AND (top.x, top.q) > (s.purged_xid, s.purged_seq) THEN
            UPDATE luma.sync_tables SET purged_xid = top.x, purged_seq = top.q WHERE table_name = s.table_name;
        END IF;
        counts := counts || jsonb_build_object(s.table_name, n);
    END LOOP;
    DELETE FROM luma.key_tombstones kt WHERE kt.deleted_at < now() - p_horizon;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('key_tombstones', n);
    RETURN counts;
END
$$;
