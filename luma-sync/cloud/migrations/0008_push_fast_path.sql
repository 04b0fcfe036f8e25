-- Cheaper pushes of large batches (same answers as 0004, and keeping 0006's key tombstones and
-- per-user push lock):
-- * luma_push: a batch that is one run (upserts of one table, as the engine sends a large push)
--   goes to the set-based path directly, and its outcomes are answered as push_run built them.
--   The general path groups the batch into runs with window functions, re-aggregates each run
--   into a new jsonb value and collects the outcomes in an array that is turned back into jsonb:
--   for a 1,000-change batch that bookkeeping cost about as much as the writes. A run push_run
--   refuses (SQLSTATE LU001 or a refusal) runs change by change, each in its own subtransaction,
--   exactly as in the general path.
-- * luma.push_run: the keys of the run travel as a text array cast to the key column's type
--   (an index lookup with `= ANY`), instead of a jsonb array of the rows that was built and then
--   expanded into records three times (current state, invisible keys, parents); the parent check
--   reads the distinct parent references only; no separate look-up of keys that exist but are
--   invisible to the caller (such a key's insert fails on the primary key, and luma_push then
--   runs the run change by change, which reports it as forbidden); no count of rows to update
--   when none of the run's keys exists.

CREATE OR REPLACE FUNCTION public.luma_push(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    r record;
    v_out jsonb;
    results jsonb[] := '{}';
    v_c jsonb;
    v_n bigint;
    v_t1 text;
    v_t2 text;
    v_upserts boolean;
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_push needs a signed-in user';
    END IF;
    IF jsonb_typeof(changes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'luma_push takes a JSON array of changes';
    END IF;
    -- One run: every change an upsert of the same table.
    SELECT count(*), min(x.ch ->> 'table'), max(x.ch ->> 'table'), coalesce(bool_and(x.ch ->> 'op' = 'upsert'), false)
    INTO v_n, v_t1, v_t2, v_upserts
    FROM jsonb_array_elements(changes) x(ch);
    -- The user's push lock (0006): exclusive for a batch with deletes (or anything but
    -- upserts), shared otherwise, so a kept delete of a key the server never had and a first
    -- insert of that key from another device cannot pass each other unseen.
    IF v_upserts THEN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('luma_push:' || auth.uid()::text, 0));
    ELSE
        PERFORM pg_advisory_xact_lock(hashtextextended('luma_push:' || auth.uid()::text, 0));
    END IF;
    IF v_n > 1 AND v_upserts AND v_t1 = v_t2 THEN
        BEGIN
            v_out := luma.push_run(v_t1, changes);
        EXCEPTION WHEN SQLSTATE 'LU001' OR unique_violation OR insufficient_privilege OR foreign_key_violation
                       OR check_violation OR not_null_violation OR data_exception OR datatype_mismatch
                       OR invalid_parameter_value THEN
            v_out := NULL;
        END;
        IF v_out IS NOT NULL THEN
            RETURN v_out;
        END IF;
        FOR v_c IN SELECT x.e FROM jsonb_array_elements(changes) WITH ORDINALITY x(e, o) ORDER BY o LOOP
            results := results || luma.push_one(v_c);
        END LOOP;
        RETURN to_jsonb(results);
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

CREATE OR REPLACE FUNCTION luma.push_run(p_table text, p_run jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    k text;
    v_keys text[];
    v_ktype text;
    v_ctype text;
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
    SELECT format_type(a.atttypid, a.atttypmod) INTO STRICT v_ktype
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = s.rel AND a.attname = k;
    SELECT bool_or(NOT (c ->> 'hlc' ~ '^[0-9]{15}-[0-9]{6}-[0-9a-f]{16}$'
                        AND jsonb_typeof(c -> 'row') = 'object'
                        AND c -> 'row' ->> k IS NOT DISTINCT FROM c ->> 'key'
                        AND c ->> 'key' IS NOT NULL)),
           count(DISTINCT c ->> 'key') <> count(*),
           array_agg(c ->> 'key' ORDER BY o)
    INTO v_bad, v_dup, v_keys
    FROM jsonb_array_elements(p_run) WITH ORDINALITY e(c, o);
    IF v_bad OR v_dup THEN
        RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
    END IF;
    -- A kept delete of one of the keys (luma.key_tombstones, 0006): the per-change path weighs it.
    IF EXISTS (SELECT 1 FROM luma.key_tombstones kt
               WHERE kt.uid = auth.uid() AND kt.table_name = p_table AND kt.key = ANY (v_keys)) THEN
        RAISE EXCEPTION USING ERRCODE = 'LU001', MESSAGE = 'per-change path';
    END IF;

    -- Current server state of the keys (locked), keyed by record key.
    EXECUTE format(
        'SELECT coalesce(jsonb_object_agg(x.k, jsonb_build_object(''hlc'', x.hlc, ''deleted'', x.deleted, ''row'', x.r)), ''{}'') '
        'FROM (SELECT %s AS k, t.hlc, t.deleted_at IS NOT NULL AS deleted, %s AS r '
        '      FROM %I.%I t WHERE t.%I = ANY ($1::%s[]) FOR UPDATE OF t) x',
        s.key_expr, s.row_expr, s.schema_name, s.table_name, k, v_ktype)
        INTO v_existing USING v_keys;

    -- A key that exists but is invisible to the caller is not in v_existing: its insert below
    -- fails on the primary key (unique_violation), and luma_push runs the run change by change,
    -- where it is reported (forbidden). No separate look-up of invisible keys.

    -- Every parent of a row to write is live and visible.
    FOR p IN SELECT e FROM jsonb_array_elements(s.parents) e LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO STRICT v_ctype
        FROM pg_catalog.pg_attribute a WHERE a.attrelid = s.rel AND a.attname = p ->> 'column';
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT e.c -> ''row'' ->> %L AS v FROM jsonb_array_elements($1) e(c)) d '
            'WHERE d.v IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %I.%I p WHERE p.%I = d.v::%s AND p.deleted_at IS NULL))',
            p ->> 'column', p ->> 'schema', p ->> 'table', p ->> 'ref', v_ctype)
            INTO v_bad USING p_run;
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
    IF v_existing = '{}'::jsonb THEN
        v_expected := 0;
    ELSE
        SELECT count(*) INTO v_expected FROM jsonb_array_elements(p_run) e(c)
        WHERE v_existing ? (c ->> 'key') AND (v_existing -> (c ->> 'key') ->> 'hlc') COLLATE "C" < (c ->> 'hlc') COLLATE "C";
    END IF;
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
