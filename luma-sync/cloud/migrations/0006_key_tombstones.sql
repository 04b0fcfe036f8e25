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

CREATE OR REPLACE FUNCTION luma.push_run(p_table text, p_run jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    k text;
    v_rows jsonb;
    v_existing jsonb;
    v_bad boolean;
    v_dup boolean;
    p jsonb;
    v_cols text;
    v_rcols text;
    v_expected bigint;
    n bigint;
    res jsonb;
BEGIN
    SELECT * INTO s FROM luma.sync_tables WHERE table_name = p_table;
    IF NOT FOUND OR cardinality(s.key_cols) <> 1 OR cardinality(s.bytea_cols) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
    END IF;
    k := s.key_cols[1];
    SELECT bool_or(NOT (c ->> 'hlc' ~ '^[0-9]{15}-[0-9]{6}-[0-9a-f]{16}$'
                        AND jsonb_typeof(c -> 'row') = 'object'
                        AND c -> 'row' ->> k IS NOT DISTINCT FROM c ->> 'key'
                        AND c ->> 'key' IS NOT NULL)),
           count(DISTINCT c ->> 'key') <> count(*),
           jsonb_agg(c -> 'row' ORDER BY o)
    INTO v_bad, v_dup, v_rows
    FROM jsonb_array_elements(p_run) WITH ORDINALITY e(c, o);
    IF v_bad OR v_dup THEN
        RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
    END IF;
    -- A kept delete of one of the keys: the per-change path weighs it.
    IF EXISTS (SELECT 1 FROM luma.key_tombstones kt
               WHERE kt.uid = auth.uid() AND kt.table_name = p_table
                 AND kt.key IN (SELECT e.c ->> 'key' FROM jsonb_array_elements(p_run) e(c))) THEN
        RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
    END IF;

    -- Current server state of the keys (locked), keyed by record key.
    EXECUTE format(
        'SELECT coalesce(jsonb_object_agg(x.k, jsonb_build_object(''hlc'', x.hlc, ''deleted'', x.deleted, ''row'', x.r)), ''{}'') '
        'FROM (SELECT %s AS k, t.hlc, t.deleted_at IS NOT NULL AS deleted, %s AS r '
        '      FROM %I.%I t WHERE t.%I IN (SELECT r.%I FROM jsonb_populate_recordset(NULL::%I.%I, $1) r) FOR UPDATE OF t) x',
        s.key_expr, s.row_expr, s.schema_name, s.table_name, k, k, s.schema_name, s.table_name)
        INTO v_existing USING v_rows;

    -- A key that exists but is invisible to the caller: let the per-change path report it.
    IF EXISTS (SELECT 1 FROM luma.existing_keys(s.table_name, v_rows) ek WHERE NOT v_existing ? ek) THEN
        RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
    END IF;

    -- Every parent of a row to write is live and visible.
    FOR p IN SELECT e FROM jsonb_array_elements(s.parents) e LOOP
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::%I.%I, $1) r '
            'WHERE r.%I IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %I.%I p WHERE p.%I = r.%I AND p.deleted_at IS NULL))',
            s.schema_name, s.table_name, p ->> 'column', p ->> 'schema', p ->> 'table', p ->> 'ref', p ->> 'column')
            INTO v_bad USING v_rows;
        IF v_bad THEN
            RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
        END IF;
    END LOOP;

    SELECT string_agg(format('%I', c), ', '), string_agg(format('r.%I', c), ', ')
    INTO v_cols, v_rcols FROM unnest(s.data_cols) c;

    -- New keys.
    EXECUTE format(
        'INSERT INTO %I.%I (%s, hlc) '
        'SELECT %s, e.c ->> ''hlc'' FROM jsonb_array_elements($1) e(c) '
        'CROSS JOIN LATERAL jsonb_populate_record(NULL::%I.%I, e.c -> ''row'') r WHERE NOT $2 ? (e.c ->> ''key'')',
        s.schema_name, s.table_name, v_cols, v_rcols, s.schema_name, s.table_name) USING p_run, v_existing;

    -- Existing keys with an older stamp.
    SELECT count(*) INTO v_expected FROM jsonb_array_elements(p_run) e(c)
    WHERE v_existing ? (c ->> 'key') AND (v_existing -> (c ->> 'key') ->> 'hlc') COLLATE "C" < (c ->> 'hlc') COLLATE "C";
    IF v_expected > 0 THEN
        EXECUTE format(
            'UPDATE %I.%I t SET (%s) = (%s), hlc = x.h, deleted_at = NULL '
            'FROM (SELECT e.c ->> ''hlc'' AS h, r.* FROM jsonb_array_elements($1) e(c) '
            '      CROSS JOIN LATERAL jsonb_populate_record(NULL::%I.%I, e.c -> ''row'') r '
            '      WHERE $2 ? (e.c ->> ''key'') AND ($2 -> (e.c ->> ''key'') ->> ''hlc'') COLLATE "C" < (e.c ->> ''hlc'') COLLATE "C") x '
            'WHERE t.%I = x.%I',
            s.schema_name, s.table_name, v_cols,
            (SELECT string_agg(format('x.%I', c), ', ') FROM unnest(s.data_cols) c),
            s.schema_name, s.table_name, k, k) USING p_run, v_existing;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> v_expected THEN
            RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
        END IF;
    END IF;

    SELECT jsonb_agg(
        CASE WHEN v_existing ? (c ->> 'key')
                  AND (v_existing -> (c ->> 'key') ->> 'hlc') COLLATE "C" > (c ->> 'hlc') COLLATE "C"
             THEN luma.outcome(c, 'superseded') || jsonb_build_object(
                      'hlc', v_existing -> (c ->> 'key') -> 'hlc',
                      'deleted', v_existing -> (c ->> 'key') -> 'deleted',
                      'row', CASE WHEN (v_existing -> (c ->> 'key') ->> 'deleted')::boolean THEN 'null'::jsonb
                                  ELSE v_existing -> (c ->> 'key') -> 'row' END)
             ELSE luma.outcome(c, 'applied') END
        ORDER BY o)
    INTO res FROM jsonb_array_elements(p_run) WITH ORDINALITY e(c, o);
    RETURN res;
END
$$;

CREATE OR REPLACE FUNCTION public.luma_push(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    r record;
    v_out jsonb;
    results jsonb[] := '{}';
    v_c jsonb;
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_push needs a signed-in user';
    END IF;
    IF jsonb_typeof(changes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'luma_push takes a JSON array of changes';
    END IF;
    -- A kept delete of a key the server never had (luma.key_tombstones) and a first insert of
    -- that key from another device of the user must not pass each other unseen (under READ
    -- COMMITTED neither would see the other's uncommitted row). A batch with deletes takes the
    -- user's push lock exclusively, any other batch shares it: upserts of one user still run
    -- concurrently, a batch with deletes waits for them and they wait for it.
    IF changes @> '[{"op": "delete"}]' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('luma_push:' || auth.uid()::text, 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('luma_push:' || auth.uid()::text, 0));
    END IF;
    -- Runs of consecutive upserts of one table (one pass over the array: a large jsonb value
    -- is detoasted once, not once per element).
    FOR r IN
        WITH e AS (
            SELECT o, x.ch, x.ch ->> 'table' AS t, x.ch ->> 'op' AS op,
                   lag(x.ch ->> 'table') OVER (ORDER BY o) AS prev_t, lag(x.ch ->> 'op') OVER (ORDER BY o) AS prev_op
            FROM jsonb_array_elements(changes) WITH ORDINALITY x(ch, o)
        ), g AS (
            SELECT o, ch, t, sum(CASE WHEN op = 'upsert' AND prev_op = 'upsert' AND t = prev_t THEN 0 ELSE 1 END)
                              OVER (ORDER BY o) AS run
            FROM e
        )
        SELECT min(t) AS t, jsonb_agg(ch ORDER BY o) AS cs, count(*) AS n FROM g GROUP BY run ORDER BY run
    LOOP
        v_out := NULL;
        IF r.n > 1 THEN
            BEGIN
                v_out := luma.push_run(r.t, r.cs);
            EXCEPTION WHEN SQLSTATE 'LU001' OR unique_violation OR insufficient_privilege OR foreign_key_violation
                           OR check_violation OR not_null_violation OR data_exception OR datatype_mismatch
                           OR invalid_parameter_value THEN
                v_out := NULL;
            END;
        END IF;
        IF v_out IS NULL THEN
            FOR v_c IN SELECT x.e FROM jsonb_array_elements(r.cs) WITH ORDINALITY x(e, o) ORDER BY o LOOP
                results := results || luma.push_one(v_c);
            END LOOP;
        ELSE
            results := results || ARRAY(SELECT x.e FROM jsonb_array_elements(v_out) WITH ORDINALITY x(e, o) ORDER BY o);
        END IF;
    END LOOP;
    RETURN to_jsonb(results);
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
