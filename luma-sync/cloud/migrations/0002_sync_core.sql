-- The generic sync machinery: a registry of synced tables, the change stamp (transaction id +
-- sequence) every write receives, the owner guard, and `luma.enable_sync`, which turns a plain
-- table into a synced one (sync columns, indexes, triggers, row-level security, grants).
-- Push and pull (0004) read everything they need from the registry.

CREATE SCHEMA IF NOT EXISTS luma;
GRANT USAGE ON SCHEMA luma TO authenticated, service_role;

-- Global change order. Within one transaction the sequence orders writes; across transactions
-- the transaction id (`pg_current_xact_id()`) does, served only below the snapshot xmin.
CREATE SEQUENCE luma.change_seq;
GRANT USAGE ON SEQUENCE luma.change_seq TO authenticated, service_role;

CREATE TABLE luma.sync_tables (
    table_name   text PRIMARY KEY,
    schema_name  text NOT NULL,
    rel          regclass NOT NULL UNIQUE,
    ord          serial NOT NULL,
    scope        text NOT NULL CHECK (scope IN ('owner', 'owner_or_public', 'venue', 'in_venue', 'parent')),
    scope_column text,
    owner_column text,
    flag_column  text,
    key_cols     text[] NOT NULL,
    data_cols    text[] NOT NULL,
    bytea_cols   text[] NOT NULL,
    -- [{"column": fk column, "table": parent table, "schema": parent schema, "ref": parent key column}]
    parents      jsonb NOT NULL,
    key_expr     text NOT NULL,   -- canonical record key of row alias t, as text
    row_expr     text NOT NULL,   -- wire form of row alias t, as jsonb
    key_match    text NOT NULL,   -- "t's key = the key in jsonb $1"
    insert_sql   text NOT NULL,   -- $1 row jsonb, $2 hlc
    update_sql   text NOT NULL,   -- $1 key jsonb, $2 row jsonb, $3 hlc
    purged_xid   xid8 NOT NULL DEFAULT '0',
    purged_seq   bigint NOT NULL DEFAULT 0
);
ALTER TABLE luma.sync_tables ENABLE ROW LEVEL SECURITY;
ALTER TABLE luma.sync_tables FORCE ROW LEVEL SECURITY;
CREATE POLICY luma_read ON luma.sync_tables FOR SELECT USING (true);
GRANT SELECT ON luma.sync_tables TO authenticated, service_role;
GRANT UPDATE (purged_xid, purged_seq) ON luma.sync_tables TO service_role;

-- RFC 3339 UTC text with the fraction trimmed as chrono's `AutoSi` does (none, ms or us), so a
-- timestamp pulled from the server has the same text a client pushed.
CREATE FUNCTION luma.ts_text(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE
            WHEN us % 1000000 = 0 THEN ''
            WHEN us % 1000 = 0 THEN '.' || lpad(((us % 1000000) / 1000)::text, 3, '0')
            ELSE '.' || lpad((us % 1000000)::text, 6, '0')
        END
        || 'Z'
    FROM (SELECT extract(microseconds FROM (t AT TIME ZONE 'UTC'))::bigint AS us) x
$$;

-- A float as JSON that deserializes to the same f64 and keeps a fraction for integral values
-- (2.0, not 2), as serde_json writes an f64: a client comparing rows sees what it pushed.
CREATE FUNCTION luma.f8_json(x double precision) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN x = trunc(x) AND x <> 'Infinity'::float8 AND x <> '-Infinity'::float8
            THEN (trunc(x)::numeric::text || '.0')::jsonb
        ELSE to_jsonb(x)
    END
$$;

-- Every insert and update (through luma_push or direct SQL) gets its change position.
CREATE FUNCTION luma.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id();
    NEW.change_seq := nextval('luma.change_seq');
    RETURN NEW;
END
$$;

-- The owner column (TG_ARGV[0]) of a row written by a signed-in user is that user, and never
-- changes afterwards.
CREATE FUNCTION luma.guard_owner() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    col text := TG_ARGV[0];
    new_owner text := to_jsonb(NEW) ->> col;
BEGIN
    IF current_user NOT IN ('authenticated', 'anon') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF new_owner IS DISTINCT FROM auth.uid()::text THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = format('%s.%s must be the signed-in user', TG_TABLE_NAME, col);
        END IF;
    ELSIF new_owner IS DISTINCT FROM (to_jsonb(OLD) ->> col) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('%s.%s (the owner) cannot change', TG_TABLE_NAME, col);
    END IF;
    RETURN NEW;
END
$$;

-- Predicates call auth.uid() and luma.my_venues() (0003) through sub-selects, so each is
-- evaluated once per statement (an init plan / hashed sub-plan), not once per row.
-- The visibility predicate of a registered table for row alias `alias`.
-- kind: 'read', 'insert', 'write' (update; also the parent check of a child's writes) or 'delete'.
CREATE FUNCTION luma.scope_pred(p_table text, p_alias text, p_kind text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s luma.sync_tables;
    p jsonb;
    pa text := p_alias || '_p';
    q text;
BEGIN
    SELECT * INTO STRICT s FROM luma.sync_tables WHERE table_name = p_table;
    CASE s.scope
    WHEN 'owner' THEN
        RETURN format('(%I.%I = (SELECT auth.uid()))', p_alias, s.owner_column);
    WHEN 'owner_or_public' THEN
        IF p_kind = 'read' THEN
            RETURN format('(%I.%I = (SELECT auth.uid()) OR %I.%I)', p_alias, s.owner_column, p_alias, s.flag_column);
        END IF;
        RETURN format('(%I.%I = (SELECT auth.uid()))', p_alias, s.owner_column);
    WHEN 'venue' THEN
        IF p_kind IN ('insert', 'delete') THEN
            RETURN format('(%I.%I = (SELECT auth.uid()))', p_alias, s.owner_column);
        END IF;
        RETURN format('(%I.%I IN (SELECT luma.my_venues()))', p_alias, s.key_cols[1]);
    WHEN 'in_venue' THEN
        RETURN format('(%I.%I IN (SELECT luma.my_venues()))', p_alias, s.scope_column);
    WHEN 'parent' THEN
        SELECT e INTO STRICT p FROM jsonb_array_elements(s.parents) e WHERE e ->> 'column' = s.scope_column;
        q := format('EXISTS (SELECT 1 FROM %I.%I %I WHERE %I.%I = %I.%I', p ->> 'schema', p ->> 'table', pa,
                    pa, p ->> 'ref', p_alias, s.scope_column);
        IF p_kind <> 'read' THEN
            q := q || ' AND ' || luma.scope_pred(p ->> 'table', pa, 'write');
        END IF;
        RETURN q || ')';
    END CASE;
END
$$;

-- Turns a table into a synced table. scope:
--   'owner'           (p_owner)            only the owner reads and writes
--   'owner_or_public' (p_owner, p_flag)    owner writes; everyone signed in reads when p_flag
--   'venue'           (p_owner)            the venue table itself
--   'in_venue'        (p_column)           p_column references a venue: its owner and members
--   'parent'          (p_column)           inherits the visibility of the row p_column references
-- p_owner may also be given for 'in_venue' tables (scores.uid): the guard then keeps it honest.
-- The table needs a primary key; parents must be registered first (their FKs are discovered).
-- Idempotent: calling it again refreshes the registry entry and the policies.
CREATE FUNCTION luma.enable_sync(p_table regclass, p_scope text, p_column text DEFAULT NULL,
                                 p_owner text DEFAULT NULL, p_flag text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_schema text;
    v_name text;
    v_keys text[];
    v_data text[];
    v_bytea text[];
    v_ts text[];
    v_f8 text[];
    v_parents jsonb;
    v_key_expr text;
    v_row_expr text;
    v_key_match text;
    v_over text;
    v_cols text;
    v_rcols text;
    v_read text;
    v_write text;
    v_delete text;
    v_insert text;
BEGIN
    SELECT n.nspname, c.relname INTO STRICT v_schema, v_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;

    EXECUTE format($f$ALTER TABLE %1$I.%2$I
        ADD COLUMN IF NOT EXISTS hlc text COLLATE "C" NOT NULL
            CHECK (hlc ~ '^[0-9]{15}-[0-9]{6}-[0-9a-f]{16}$'),
        ADD COLUMN IF NOT EXISTS deleted_at timestamptz,
        ADD COLUMN IF NOT EXISTS change_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        ADD COLUMN IF NOT EXISTS change_seq bigint NOT NULL DEFAULT nextval('luma.change_seq')$f$,
        v_schema, v_name);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (change_xid, change_seq)',
                   v_name || '_luma_change', v_schema, v_name);

    SELECT array_agg(a.attname::text ORDER BY k.ord) INTO v_keys
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = p_table AND i.indisprimary;
    IF v_keys IS NULL THEN
        RAISE EXCEPTION 'luma.enable_sync: % has no primary key', p_table;
    END IF;

    SELECT array_agg(a.attname::text ORDER BY a.attnum),
           coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.atttypid = 'bytea'::regtype), '{}'),
           coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.atttypid = 'timestamptz'::regtype), '{}'),
           coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.atttypid = 'float8'::regtype), '{}')
    INTO v_data, v_bytea, v_ts, v_f8
    FROM pg_attribute a
    WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('hlc', 'deleted_at', 'change_xid', 'change_seq');

    SELECT coalesce(jsonb_agg(jsonb_build_object('column', a.attname, 'table', s.table_name,
                                                 'schema', s.schema_name, 'ref', fa.attname)
                              ORDER BY a.attnum), '[]')
    INTO v_parents
    FROM pg_constraint co
    JOIN luma.sync_tables s ON s.rel = co.confrelid
    JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = co.conkey[1]
    JOIN pg_attribute fa ON fa.attrelid = co.confrelid AND fa.attnum = co.confkey[1]
    WHERE co.conrelid = p_table AND co.contype = 'f' AND cardinality(co.conkey) = 1;

    IF cardinality(v_keys) = 1 THEN
        v_key_expr := format('(t.%I)::text', v_keys[1]);
    ELSE
        SELECT '''['' || ' || string_agg(format('to_json((t.%I)::text)::text', k), ' || '','' || ' ORDER BY o) || ' || '']'''
        INTO v_key_expr FROM unnest(v_keys) WITH ORDINALITY AS u(k, o);
    END IF;

    SELECT string_agg(x, ', ') INTO v_over FROM (
        SELECT format('%L, encode(t.%I, ''hex'')', c, c) AS x FROM unnest(v_bytea) c
        UNION ALL
        SELECT format('%L, luma.ts_text(t.%I)', c, c) FROM unnest(v_ts) c
        UNION ALL
        SELECT format('%L, luma.f8_json(t.%I)', c, c) FROM unnest(v_f8) c) o;
    v_row_expr := '(to_jsonb(t) - ARRAY[''hlc'', ''deleted_at'', ''change_xid'', ''change_seq''])';
    IF v_over IS NOT NULL THEN
        v_row_expr := v_row_expr || ' || jsonb_build_object(' || v_over || ')';
    END IF;

    SELECT format('(%s) = (SELECT %s FROM jsonb_populate_record(NULL::%I.%I, $1) r)',
                  string_agg(format('t.%I', k), ', '), string_agg(format('r.%I', k), ', '), v_schema, v_name)
    INTO v_key_match FROM unnest(v_keys) k;

    SELECT string_agg(format('%I', c), ', '), string_agg(format('r.%I', c), ', ')
    INTO v_cols, v_rcols FROM unnest(v_data) c;

    INSERT INTO luma.sync_tables AS st (table_name, schema_name, rel, scope, scope_column, owner_column,
                                        flag_column, key_cols, data_cols, bytea_cols, parents, key_expr,
                                        row_expr, key_match, insert_sql, update_sql)
    VALUES (v_name, v_schema, p_table, p_scope, p_column, p_owner, p_flag, v_keys, v_data, v_bytea,
            v_parents, v_key_expr, v_row_expr, v_key_match,
            format('INSERT INTO %I.%I AS t (%s, hlc) SELECT %s, $2 FROM jsonb_populate_record(NULL::%I.%I, $1) r',
                   v_schema, v_name, v_cols, v_rcols, v_schema, v_name),
            format('UPDATE %I.%I t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%I.%I, $2) r), '
                   'hlc = $3, deleted_at = NULL WHERE %s',
                   v_schema, v_name, v_cols, v_rcols, v_schema, v_name, v_key_match))
    ON CONFLICT (table_name) DO UPDATE SET
        schema_name = EXCLUDED.schema_name, rel = EXCLUDED.rel, scope = EXCLUDED.scope,
        scope_column = EXCLUDED.scope_column, owner_column = EXCLUDED.owner_column,
        flag_column = EXCLUDED.flag_column, key_cols = EXCLUDED.key_cols, data_cols = EXCLUDED.data_cols,
        bytea_cols = EXCLUDED.bytea_cols, parents = EXCLUDED.parents, key_expr = EXCLUDED.key_expr,
        row_expr = EXCLUDED.row_expr, key_match = EXCLUDED.key_match, insert_sql = EXCLUDED.insert_sql,
        update_sql = EXCLUDED.update_sql;

    v_read := luma.scope_pred(v_name, v_name, 'read');
    v_write := luma.scope_pred(v_name, v_name, 'write');
    v_delete := luma.scope_pred(v_name, v_name, 'delete');
    v_insert := luma.scope_pred(v_name, v_name, 'insert');

    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', v_schema, v_name);
    EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', v_schema, v_name);
    EXECUTE format('DROP POLICY IF EXISTS luma_select ON %I.%I', v_schema, v_name);
    EXECUTE format('DROP POLICY IF EXISTS luma_insert ON %I.%I', v_schema, v_name);
    EXECUTE format('DROP POLICY IF EXISTS luma_update ON %I.%I', v_schema, v_name);
    EXECUTE format('DROP POLICY IF EXISTS luma_delete ON %I.%I', v_schema, v_name);
    EXECUTE format('CREATE POLICY luma_select ON %I.%I FOR SELECT TO authenticated USING (%s)', v_schema, v_name, v_read);
    EXECUTE format('CREATE POLICY luma_insert ON %I.%I FOR INSERT TO authenticated WITH CHECK (%s)', v_schema, v_name, v_insert);
    EXECUTE format('CREATE POLICY luma_update ON %I.%I FOR UPDATE TO authenticated USING (%s) WITH CHECK (%s)',
                   v_schema, v_name, v_write, v_write);
    EXECUTE format('CREATE POLICY luma_delete ON %I.%I FOR DELETE TO authenticated USING (%s)', v_schema, v_name, v_delete);

    EXECUTE format('REVOKE ALL ON %I.%I FROM anon', v_schema, v_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO authenticated', v_schema, v_name);
    EXECUTE format('GRANT ALL ON %I.%I TO service_role', v_schema, v_name);

    EXECUTE format('DROP TRIGGER IF EXISTS luma_stamp ON %I.%I', v_schema, v_name);
    EXECUTE format('CREATE TRIGGER luma_stamp BEFORE INSERT OR UPDATE ON %I.%I FOR EACH ROW EXECUTE FUNCTION luma.stamp()',
                   v_schema, v_name);
    EXECUTE format('DROP TRIGGER IF EXISTS luma_guard_owner ON %I.%I', v_schema, v_name);
    IF p_owner IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER luma_guard_owner BEFORE INSERT OR UPDATE ON %I.%I FOR EACH ROW '
                       'EXECUTE FUNCTION luma.guard_owner(%L)', v_schema, v_name, p_owner);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION luma.enable_sync(regclass, text, text, text, text) FROM PUBLIC;
