-- push_run without two passes a run of new keys does not need (same answers as 0008):
-- * no separate look-up of keys that exist but are invisible to the caller: such a key's insert
--   fails on the primary key, and luma_push then runs the run change by change, which reports it
--   (forbidden), as it did when the look-up found it;
-- * no count of rows to update when none of the run's keys exists.
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

-- Its only caller was push_run (0008).
DROP FUNCTION luma.existing_keys_in(text, text[]);
