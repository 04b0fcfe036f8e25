-- The RPC surface: luma_push, luma_pull, luma_watermark, luma_join_venue, luma_leave_venue,
-- luma_purge_tombstones. All but join are SECURITY INVOKER: row-level security decides.
-- Wire format: luma-sync/cloud/PROTOCOL.md.

CREATE FUNCTION luma.outcome(c jsonb, v_outcome text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('table', c -> 'table', 'key', c -> 'key', 'outcome', v_outcome)
$$;

CREATE FUNCTION luma.rejected(c jsonb, v_code text, v_reason text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT luma.outcome(c, 'rejected') || jsonb_build_object('code', v_code, 'reason', v_reason)
$$;

-- Does a row with this key exist at all (whoever may see it)? Lets push answer "forbidden"
-- instead of silently doing nothing for a row the caller cannot see. Reveals only existence.
CREATE FUNCTION luma.row_exists(p_table text, p_key jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    found boolean;
BEGIN
    SELECT * INTO STRICT s FROM luma.sync_tables WHERE table_name = p_table;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I t WHERE %s)', s.schema_name, s.table_name, s.key_match)
        INTO found USING p_key;
    RETURN found;
END
$$;
GRANT EXECUTE ON FUNCTION luma.row_exists(text, jsonb) TO authenticated, service_role;

-- Tombstones the live children (recursively) of a tombstoned row with the parent's stamp.
CREATE FUNCTION luma.tombstone_children(p_table text, p_row jsonb, p_hlc text) RETURNS void
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    ch record;
    r jsonb;
BEGIN
    FOR ch IN
        SELECT s.schema_name, s.table_name, p ->> 'column' AS col, p ->> 'ref' AS ref, p ->> 'schema' AS pschema
        FROM luma.sync_tables s, jsonb_array_elements(s.parents) p
        WHERE p ->> 'table' = p_table
        ORDER BY s.ord
    LOOP
        FOR r IN EXECUTE format(
            'UPDATE %I.%I t SET hlc = $2, deleted_at = now() '
            'WHERE t.%I = (SELECT r.%I FROM jsonb_populate_record(NULL::%I.%I, $1) r) AND t.deleted_at IS NULL '
            'RETURNING to_jsonb(t)',
            ch.schema_name, ch.table_name, ch.col, ch.ref, ch.pschema, p_table) USING p_row, p_hlc
        LOOP
            PERFORM luma.tombstone_children(ch.table_name, r, p_hlc);
        END LOOP;
    END LOOP;
END
$$;

-- Applies one change; raises on constraint / privilege errors (luma_push turns them into
-- "rejected" outcomes).
CREATE FUNCTION luma.apply_change(c jsonb) RETURNS jsonb
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
    END IF;

    IF v_op = 'delete' THEN
        IF NOT v_found THEN
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
    END IF;
    RETURN luma.outcome(c, 'applied');
END
$$;

-- Keys of `p_keys` (rows as jsonb, keyed by column) that exist in the table, whoever may see them.
CREATE FUNCTION luma.existing_keys(p_table text, p_rows jsonb) RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
BEGIN
    SELECT * INTO STRICT s FROM luma.sync_tables WHERE table_name = p_table;
    RETURN QUERY EXECUTE format(
        'SELECT %s FROM jsonb_populate_recordset(NULL::%I.%I, $1) r JOIN %I.%I t ON %s',
        s.key_expr, s.schema_name, s.table_name, s.schema_name, s.table_name,
        (SELECT string_agg(format('t.%I = r.%I', k, k), ' AND ') FROM unnest(s.key_cols) k)) USING p_rows;
END
$$;
GRANT EXECUTE ON FUNCTION luma.existing_keys(text, jsonb) TO authenticated, service_role;

-- Set-based path for a run of upserts of one single-key table with distinct keys: a handful of
-- statements for the whole run. Raises SQLSTATE 'LU001' when the run needs the per-change path
-- (anything unusual: a refusal, a blob column, a missing parent, an invisible existing row);
-- luma_push then replays the run change by change (the subtransaction has rolled back).
CREATE FUNCTION luma.push_run(p_table text, p_run jsonb) RETURNS jsonb
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

-- One change through the per-change path, refusals turned into outcomes.
CREATE FUNCTION luma.push_one(c jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    res jsonb;
    retried boolean := false;
    v_constraint text;
    v_msg text;
BEGIN
    LOOP
        BEGIN
            RETURN luma.apply_change(c);
        EXCEPTION
            WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_msg = MESSAGE_TEXT;
                IF NOT retried AND v_constraint LIKE '%\_pkey' THEN
                    -- the same key was inserted by a transaction that committed meanwhile
                    retried := true;
                    CONTINUE;
                END IF;
                RETURN luma.rejected(c, CASE WHEN v_constraint LIKE '%\_pkey' THEN 'forbidden' ELSE 'conflict' END, v_msg);
            WHEN insufficient_privilege THEN
                GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
                RETURN luma.rejected(c, 'forbidden', v_msg);
            WHEN foreign_key_violation THEN
                GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
                RETURN luma.rejected(c, 'missing_parent', v_msg);
            WHEN check_violation OR not_null_violation OR data_exception OR datatype_mismatch
                 OR invalid_parameter_value THEN
                GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
                RETURN luma.rejected(c, 'invalid', v_msg);
        END;
    END LOOP;
END
$$;

-- Push one batch: {"table","key","hlc","op","row"} changes in FK order, all in the caller's
-- transaction. Consecutive upserts of one table go through the set-based path; anything it
-- cannot take runs change by change, each in its own subtransaction, so a refused change is
-- reported and the rest of the batch still applies.
CREATE FUNCTION public.luma_push(changes jsonb) RETURNS jsonb
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

-- The upper bound of one pull cycle.
CREATE FUNCTION public.luma_watermark() RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER AS $$
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text
$$;

-- One page of one table after a cursor ("<xid>:<seq>", null = from the start), below the
-- watermark (never above the current snapshot xmin).
CREATE FUNCTION public.luma_pull(p_table text, p_cursor text, p_limit integer, p_watermark text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    v_xid xid8 := '0';
    v_seq bigint := 0;
    v_wm xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_lim integer := least(greatest(coalesce(p_limit, 1000), 1), 10000);
    v_parents_ok text;
    res jsonb;
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_pull needs a signed-in user';
    END IF;
    SELECT * INTO s FROM luma.sync_tables WHERE table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('unknown table %s', p_table);
    END IF;
    BEGIN
        IF p_cursor IS NOT NULL THEN
            v_xid := split_part(p_cursor, ':', 1)::xid8;
            v_seq := split_part(p_cursor, ':', 2)::bigint;
        END IF;
        IF p_watermark IS NOT NULL AND p_watermark::xid8 < v_wm THEN
            v_wm := p_watermark::xid8;
        END IF;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'malformed cursor or watermark';
    END;
    IF p_cursor IS NOT NULL AND (v_xid, v_seq) < (s.purged_xid, s.purged_seq) THEN
        RETURN jsonb_build_object('rows', '[]'::jsonb, 'cursor', NULL, 'has_more', false, 'resync_required', true);
    END IF;
    -- A row whose parent's current version is at or above the watermark is not served yet: the
    -- page stops before it (has_more = false) and a later cycle serves the parent, then the row.
    -- So the rows of one watermark form a consistent cut (no child without its parent).
    SELECT coalesce(string_agg(format(
               'NOT EXISTS (SELECT 1 FROM %I.%I p WHERE p.%I = t.%I AND p.change_xid >= $3)',
               e ->> 'schema', e ->> 'table', e ->> 'ref', e ->> 'column'), ' AND '), 'true')
    INTO v_parents_ok FROM jsonb_array_elements(s.parents) e;
    EXECUTE format($q$
        WITH page AS (
            SELECT t.change_xid, t.change_seq, %s AS k, t.hlc, t.deleted_at IS NOT NULL AS deleted,
                   CASE WHEN t.deleted_at IS NULL THEN %s END AS r, %s AS ok
            FROM %I.%I t
            WHERE (t.change_xid, t.change_seq) > ($1, $2) AND t.change_xid < $3
            ORDER BY t.change_xid, t.change_seq
            LIMIT $4 + 1
        ), num AS (
            SELECT p.*, row_number() OVER (ORDER BY p.change_xid, p.change_seq) AS rn FROM page p
        ), cut AS (
            SELECT least(coalesce(min(rn) FILTER (WHERE NOT ok), $4 + 1), $4 + 1) AS stop,
                   bool_or(NOT ok) FILTER (WHERE rn <= $4) AS stalled,
                   count(*) > $4 AS more
            FROM num
        )
        SELECT jsonb_build_object(
            'rows', coalesce(jsonb_agg(jsonb_build_object('key', k, 'hlc', hlc, 'deleted', deleted, 'row', r)
                                       ORDER BY rn) FILTER (WHERE rn < cut.stop), '[]'::jsonb),
            'cursor', coalesce((array_agg(change_xid::text || ':' || change_seq::text ORDER BY rn DESC)
                                FILTER (WHERE rn < cut.stop))[1], $5),
            'has_more', cut.more AND NOT coalesce(cut.stalled, false),
            'resync_required', false)
        FROM cut LEFT JOIN num ON true
        GROUP BY cut.stop, cut.stalled, cut.more
    $q$, s.key_expr, s.row_expr, v_parents_ok, s.schema_name, s.table_name)
    INTO res USING v_xid, v_seq, v_wm, v_lim, p_cursor;
    RETURN res;
END
$$;

-- Join a venue by its share code; answers {"venue_id": ...}.
CREATE FUNCTION public.luma_join_venue(p_code text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    u uuid := auth.uid();
    v uuid;
    v_owner uuid;
BEGIN
    IF u IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_join_venue needs a signed-in user';
    END IF;
    SELECT id, uid INTO v, v_owner FROM public.venues WHERE share_code = p_code AND deleted_at IS NULL;
    IF v IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = 'no venue has this share code';
    END IF;
    IF v_owner <> u THEN
        INSERT INTO public.venue_members (venue_id, user_id) VALUES (v, u) ON CONFLICT DO NOTHING;
    END IF;
    RETURN jsonb_build_object('venue_id', v);
END
$$;

-- Leave a venue; answers {"left": true|false}.
CREATE FUNCTION public.luma_leave_venue(p_venue uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM public.venue_members WHERE venue_id = p_venue AND user_id = auth.uid();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN jsonb_build_object('left', n > 0);
END
$$;

-- The venues the signed-in user owns or belongs to:
-- [{"venue_id", "role": "owner"|"member"|"editor", "joined_at"}], ordered by venue id.
-- Visibility changes (join, leave, removal by the owner) show up here; a client that sees its
-- set change runs a full resync (pull from null) so rows it gained arrive and rows it lost go.
CREATE FUNCTION public.luma_memberships() RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = '' AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('venue_id', m.venue_id, 'role', m.role, 'joined_at', luma.ts_text(m.joined_at))
                              ORDER BY m.venue_id), '[]'::jsonb)
    FROM (
        SELECT v.id AS venue_id, 'owner' AS role, v.created_at AS joined_at
        FROM public.venues v WHERE v.uid = (SELECT auth.uid()) AND v.deleted_at IS NULL
        UNION ALL
        SELECT vm.venue_id, vm.role, vm.joined_at
        FROM public.venue_members vm WHERE vm.user_id = (SELECT auth.uid())
    ) m
$$;

-- Hard-deletes tombstones older than the horizon (children first) and records, per table, the
-- newest purged position: a pull with an older cursor answers resync_required.
-- Answers {"<table>": purged count, ...}. Service role only.
CREATE FUNCTION public.luma_purge_tombstones(p_horizon interval) RETURNS jsonb
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
    RETURN counts;
END
$$;

REVOKE ALL ON FUNCTION public.luma_push(jsonb), public.luma_pull(text, text, integer, text),
    public.luma_watermark(), public.luma_join_venue(text), public.luma_leave_venue(uuid),
    public.luma_memberships(), public.luma_purge_tombstones(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.luma_push(jsonb), public.luma_pull(text, text, integer, text),
    public.luma_watermark(), public.luma_join_venue(text), public.luma_leave_venue(uuid),
    public.luma_memberships() TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.luma_purge_tombstones(interval) TO service_role;
