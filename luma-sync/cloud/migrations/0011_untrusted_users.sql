-- Other users are untrusted (issue 12, DESIGN invariant 11): bounded stamps, writes only through
-- the checked push path, a defined via-score read rule, neutral refusals, and CHECK rules that
-- mirror the client's validation. Every earlier function this file changes is restated in full
-- (CREATE OR REPLACE); earlier migrations are not edited.
--
-- 1. Clock skew. `luma.config` (one row) holds `max_clock_skew_ms` (default 300000 = 5 min).
--    `luma.apply_change` refuses a change whose stamp's physical part (its first 15 digits, ms
--    since the epoch) is ahead of `clock_timestamp()` by more than that: outcome `rejected`,
--    code `clock_skew`. `luma.push_run` sends such a run to the per-change path. Change it
--    with `UPDATE luma.config SET max_clock_skew_ms = 600000;` (as the schema owner).
-- 2. Writes only through `luma_push`. The role `luma_writer` (NOLOGIN, NOBYPASSRLS) owns
--    `luma_push` (SECURITY DEFINER, search_path '') and alone holds INSERT / UPDATE / DELETE on
--    the synced tables and `luma.key_tombstones`; `authenticated` keeps SELECT only, `anon`
--    nothing. The write policies apply TO luma_writer, the read policies TO authenticated,
--    luma_writer; `auth.uid()` still reads the request's claims, and the guard triggers treat
--    luma_writer as they treat authenticated. Internal helpers are no longer executable by
--    PUBLIC / authenticated / anon.
-- 3. Via-score reads: a private track (pattern) is readable through a venue only by an owner or
--    member of that venue, and only while a live score of that venue (for a pattern: a live
--    track_score of a live score of that venue) that was made by the row's own owner references
--    it (score.uid = track.uid / pattern.uid). A tombstoned track (pattern) stays readable
--    through any such score, live or not, so its tombstone reaches the members.
-- 4. Neutral refusals: a write of a row the caller cannot write answers `forbidden`, "not
--    writable by this user", whether or not the row exists.
-- 5. CHECK rules (NOT VALID: rows stored before this migration are not re-checked, so the
--    upgrade never fails; new writes and updates are checked). They mirror luma-model's
--    `validate.rs` and the records' `validate()` (each rule there points back here).
-- 6. `luma_pull` refuses a malformed watermark or cursor with 22023 before casting.

-- ---- 2. the writer role -------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'luma_writer') THEN
        BEGIN
            CREATE ROLE luma_writer NOLOGIN NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently by another database's migration (roles are cluster-wide)
        END;
    END IF;
    -- The migrating role (postgres on Supabase, with CREATEROLE) must be able to SET ROLE
    -- luma_writer to make it a function's owner.
    IF NOT pg_has_role(current_user, 'luma_writer', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT luma_writer TO %I', current_user);
        EXCEPTION WHEN OTHERS THEN
            IF NOT pg_has_role(current_user, 'luma_writer', 'MEMBER') THEN
                RAISE;
            END IF;
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA luma, public TO luma_writer;
GRANT USAGE ON SEQUENCE luma.change_seq TO luma_writer;
GRANT SELECT ON luma.sync_tables TO luma_writer;
-- auth.uid(): on Supabase the auth schema belongs to another role; if it cannot be granted
-- directly, luma_writer reaches it as a member of authenticated (whose policies state the same
-- predicates).
DO $$
BEGIN
    BEGIN
        GRANT USAGE ON SCHEMA auth TO luma_writer;
        GRANT EXECUTE ON FUNCTION auth.uid() TO luma_writer;
    EXCEPTION WHEN insufficient_privilege THEN
        GRANT authenticated TO luma_writer;
    END;
END
$$;

-- ---- 1. clock skew ------------------------------------------------------------------------

CREATE TABLE luma.config (
    id                boolean PRIMARY KEY DEFAULT true CHECK (id),
    max_clock_skew_ms bigint NOT NULL DEFAULT 300000 CHECK (max_clock_skew_ms >= 0)
);
INSERT INTO luma.config DEFAULT VALUES;
ALTER TABLE luma.config ENABLE ROW LEVEL SECURITY;
CREATE POLICY luma_read ON luma.config FOR SELECT USING (true);
REVOKE ALL ON luma.config FROM PUBLIC, anon, authenticated;
GRANT SELECT ON luma.config TO luma_writer, service_role;

-- The allowed skew in ms (the row of luma.config; 300000 if the row was deleted).
CREATE FUNCTION luma.max_clock_skew_ms() RETURNS bigint
LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT coalesce((SELECT c.max_clock_skew_ms FROM luma.config c WHERE c.id), 300000)
$$;

-- The server clock in ms since the epoch (clock_timestamp: the wall clock, not the start of the
-- transaction).
CREATE FUNCTION luma.now_ms() RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = '' AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
$$;

-- The largest physical part (ms) a stamp may have now.
CREATE FUNCTION luma.stamp_bound_ms() RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = '' AS $$
    SELECT luma.now_ms() + luma.max_clock_skew_ms()
$$;

-- ---- 2. guards see luma_writer as a signed-in user ------------------------------------------

CREATE OR REPLACE FUNCTION luma.guard_owner() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    col text := TG_ARGV[0];
    new_owner text := to_jsonb(NEW) ->> col;
BEGIN
    IF current_user NOT IN ('authenticated', 'anon', 'luma_writer') THEN
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

CREATE OR REPLACE FUNCTION luma.guard_venue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user IN ('authenticated', 'anon', 'luma_writer')
       AND OLD.uid IS DISTINCT FROM auth.uid()
       AND (NEW.share_code IS DISTINCT FROM OLD.share_code OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'only the owner of a venue deletes it or changes its share code';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION luma.guard_publish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user IN ('authenticated', 'anon', 'luma_writer')
       AND NEW.is_verified IS DISTINCT FROM (CASE WHEN TG_OP = 'INSERT' THEN false ELSE OLD.is_verified END)
       AND NEW.uid IS DISTINCT FROM auth.uid() THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'only the owner of a pattern publishes or unpublishes it';
    END IF;
    RETURN NEW;
END
$$;

-- enable_sync: the same as 0002 but write policies TO luma_writer, read policies TO
-- authenticated, luma_writer, and grants: SELECT to authenticated, writes to luma_writer.
CREATE OR REPLACE FUNCTION luma.enable_sync(p_table regclass, p_scope text, p_column text DEFAULT NULL,
                                 p_owner text DEFAULT NULL, p_flag text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = '' AS $$
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
    EXECUTE format('CREATE POLICY luma_select ON %I.%I FOR SELECT TO authenticated, luma_writer USING (%s)', v_schema, v_name, v_read);
    EXECUTE format('CREATE POLICY luma_insert ON %I.%I FOR INSERT TO luma_writer WITH CHECK (%s)', v_schema, v_name, v_insert);
    EXECUTE format('CREATE POLICY luma_update ON %I.%I FOR UPDATE TO luma_writer USING (%s) WITH CHECK (%s)',
                   v_schema, v_name, v_write, v_write);
    EXECUTE format('CREATE POLICY luma_delete ON %I.%I FOR DELETE TO luma_writer USING (%s)', v_schema, v_name, v_delete);

    -- Writes only through luma_push (owned by luma_writer): users read, never write directly.
    EXECUTE format('REVOKE ALL ON %I.%I FROM PUBLIC, anon, authenticated', v_schema, v_name);
    EXECUTE format('GRANT SELECT ON %I.%I TO authenticated', v_schema, v_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO luma_writer', v_schema, v_name);
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

-- Re-register every table (built-in and plugin) so its policies and grants follow the new rule.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT * FROM luma.sync_tables ORDER BY ord LOOP
        PERFORM luma.enable_sync(s.rel, s.scope, s.scope_column, s.owner_column, s.flag_column);
    END LOOP;
END
$$;

-- Kept deletes (0006): written by luma_push only.
DROP POLICY luma_own ON luma.key_tombstones;
CREATE POLICY luma_own ON luma.key_tombstones FOR ALL TO luma_writer
    USING (uid = (SELECT auth.uid())) WITH CHECK (uid = (SELECT auth.uid()));
REVOKE ALL ON luma.key_tombstones FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON luma.key_tombstones TO luma_writer;

-- ---- 3. via-score reads ---------------------------------------------------------------------

DROP POLICY luma_select_via_score ON public.tracks;
DROP POLICY luma_select_via_score ON public.patterns;
-- A live score of a venue of the user, made by the track's owner.
CREATE POLICY luma_select_via_score ON public.tracks FOR SELECT TO authenticated, luma_writer USING (
    (id, uid) IN (SELECT s.track_id, s.uid FROM public.scores s
                  WHERE s.deleted_at IS NULL AND s.venue_id IN (SELECT luma.my_venues())));
-- A tombstoned track: through any score of such a venue by its owner, so the tombstone reaches
-- the members (a tombstone carries no data).
CREATE POLICY luma_select_via_score_gone ON public.tracks FOR SELECT TO authenticated, luma_writer USING (
    deleted_at IS NOT NULL
    AND (id, uid) IN (SELECT s.track_id, s.uid FROM public.scores s WHERE s.venue_id IN (SELECT luma.my_venues())));
-- A live track_score of a live score of a venue of the user, the score made by the pattern's owner.
CREATE POLICY luma_select_via_score ON public.patterns FOR SELECT TO authenticated, luma_writer USING (
    (id, uid) IN (SELECT ts.pattern_id, s.uid FROM public.track_scores ts JOIN public.scores s ON s.id = ts.score_id
                  WHERE ts.deleted_at IS NULL AND s.deleted_at IS NULL AND s.venue_id IN (SELECT luma.my_venues())));
CREATE POLICY luma_select_via_score_gone ON public.patterns FOR SELECT TO authenticated, luma_writer USING (
    deleted_at IS NOT NULL
    AND (id, uid) IN (SELECT ts.pattern_id, s.uid FROM public.track_scores ts JOIN public.scores s ON s.id = ts.score_id
                      WHERE s.venue_id IN (SELECT luma.my_venues())));

-- ---- 5. value rules ------------------------------------------------------------------------
-- One table of rules, mirrored by luma-model (`validate.rs` and each record's `validate()`):
--   names (venues, fixture_groups, patterns, implementations, scores): not only white space
--     (Unicode White_Space, as Rust's trim), at most 200 characters      -> validate::name
--   floats: finite (NaN, +-Infinity refused)                          -> validate::finite
--   ranges: fixtures universe 1..63999, address 1..512, num_channels 1..512 (0003) and
--     address + num_channels - 1 <= 512; group axes -1..1 (0003); tracks bpm 1..1000,
--     duration >= 0, track/disc number 0..4294967295; beats_per_bar 1..64; sample_rate
--     1..1000000; decoded_duration >= 0; start_time >= 0, end_time >= start_time
--   formats: share_code 8 x [A-Z0-9]; track_hash 64 x [0-9a-f]; blend_mode one of
--     BlendMode::ALL
--   JSON: tags an array of strings; beats / downbeats arrays of finite numbers >= 0, ascending;
--     graph_json and args objects; every JSON column: numbers within f64 and nesting below
--     64 levels (what serde_json decodes)                             -> validate::json_value
--   timestamps: finite, years 1..9999 (RFC 3339 text the client parses)
--   text without NUL: PostgreSQL's text and jsonb refuse NUL already  -> validate::no_nul

-- A name: some character that is not Unicode White_Space, at most 200 characters.
CREATE FUNCTION luma.is_name(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT v ~ '[^\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]'
       AND char_length(v) <= 200
$$;

CREATE FUNCTION luma.is_finite(x double precision) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT x NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)
$$;

CREATE FUNCTION luma.is_time(t timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT t >= '0001-01-01 00:00:00+00'::timestamptz AND t < '10000-01-01 00:00:00+00'::timestamptz
$$;

-- A JSON value serde_json decodes: numbers within f64, no value nested 64 levels deep.
CREATE FUNCTION luma.is_decodable_json(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT NOT jsonb_path_exists(v, 'strict $.**{64 to last}')
       AND NOT jsonb_path_exists(v, 'strict $.** ? (@.type() == "number" && (@ > 1.7976931348623157e308 || @ < -1.7976931348623157e308))')
$$;

-- A JSON array of strings.
CREATE FUNCTION luma.is_text_array(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_typeof(v) = 'array' AND NOT jsonb_path_exists(v, 'strict $[*] ? (@.type() != "string")')
$$;

-- A JSON array of finite numbers >= 0 in ascending order (a beat grid).
CREATE FUNCTION luma.is_beat_list(v jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    e jsonb;
    x numeric;
    prev numeric := 0;
BEGIN
    IF jsonb_typeof(v) IS DISTINCT FROM 'array' THEN
        RETURN false;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(v) LOOP
        IF jsonb_typeof(e) <> 'number' THEN
            RETURN false;
        END IF;
        x := e::text::numeric;
        IF x < prev OR x > 1.7976931348623157e308 THEN
            RETURN false;
        END IF;
        prev := x;
    END LOOP;
    RETURN true;
END
$$;

ALTER TABLE public.venues
    ADD CONSTRAINT luma_rule_venues_name CHECK (luma.is_name(name)) NOT VALID,
    ADD CONSTRAINT luma_rule_venues_share_code CHECK (share_code ~ '^[A-Z0-9]{8}$') NOT VALID,
    ADD CONSTRAINT luma_rule_venues_times CHECK (luma.is_time(created_at) AND luma.is_time(updated_at)) NOT VALID;
ALTER TABLE public.fixtures
    ADD CONSTRAINT luma_rule_fixtures_footprint CHECK (address + num_channels - 1 <= 512) NOT VALID,
    ADD CONSTRAINT luma_rule_fixtures_finite CHECK (
        luma.is_finite(pos_x) AND luma.is_finite(pos_y) AND luma.is_finite(pos_z)
        AND luma.is_finite(rot_x) AND luma.is_finite(rot_y) AND luma.is_finite(rot_z)) NOT VALID;
ALTER TABLE public.fixture_groups
    ADD CONSTRAINT luma_rule_fixture_groups_name CHECK (luma.is_name(name)) NOT VALID,
    ADD CONSTRAINT luma_rule_fixture_groups_tags CHECK (luma.is_text_array(tags) AND luma.is_decodable_json(tags)) NOT VALID,
    ADD CONSTRAINT luma_rule_fixture_groups_movement_config CHECK (luma.is_decodable_json(movement_config)) NOT VALID;
ALTER TABLE public.patterns
    ADD CONSTRAINT luma_rule_patterns_name CHECK (luma.is_name(name)) NOT VALID,
    ADD CONSTRAINT luma_rule_patterns_times CHECK (luma.is_time(created_at) AND luma.is_time(updated_at)) NOT VALID;
ALTER TABLE public.implementations
    ADD CONSTRAINT luma_rule_implementations_name CHECK (luma.is_name(name)) NOT VALID,
    ADD CONSTRAINT luma_rule_implementations_graph_json CHECK (
        jsonb_typeof(graph_json) = 'object' AND luma.is_decodable_json(graph_json)) NOT VALID;
ALTER TABLE public.tracks
    ADD CONSTRAINT luma_rule_tracks_track_hash CHECK (track_hash ~ '^[0-9a-f]{64}$') NOT VALID,
    ADD CONSTRAINT luma_rule_tracks_duration CHECK (luma.is_finite(duration_seconds) AND duration_seconds >= 0) NOT VALID,
    ADD CONSTRAINT luma_rule_tracks_bpm CHECK (bpm BETWEEN 1 AND 1000) NOT VALID,
    ADD CONSTRAINT luma_rule_tracks_numbers CHECK (
        track_number BETWEEN 0 AND 4294967295 AND disc_number BETWEEN 0 AND 4294967295) NOT VALID,
    ADD CONSTRAINT luma_rule_tracks_times CHECK (luma.is_time(created_at) AND luma.is_time(updated_at)) NOT VALID;
ALTER TABLE public.track_beats
    ADD CONSTRAINT luma_rule_track_beats_beats CHECK (luma.is_beat_list(beats) AND luma.is_beat_list(downbeats)) NOT VALID,
    ADD CONSTRAINT luma_rule_track_beats_bpm CHECK (bpm BETWEEN 1 AND 1000) NOT VALID,
    ADD CONSTRAINT luma_rule_track_beats_downbeat_offset CHECK (luma.is_finite(downbeat_offset)) NOT VALID,
    ADD CONSTRAINT luma_rule_track_beats_beats_per_bar CHECK (beats_per_bar BETWEEN 1 AND 64) NOT VALID;
ALTER TABLE public.track_roots
    ADD CONSTRAINT luma_rule_track_roots_sections CHECK (luma.is_decodable_json(sections)) NOT VALID;
ALTER TABLE public.track_waveforms
    ADD CONSTRAINT luma_rule_track_waveforms_sample_rate CHECK (sample_rate BETWEEN 1 AND 1000000) NOT VALID,
    ADD CONSTRAINT luma_rule_track_waveforms_decoded_duration CHECK (
        luma.is_finite(decoded_duration) AND decoded_duration >= 0) NOT VALID;
ALTER TABLE public.scores
    ADD CONSTRAINT luma_rule_scores_name CHECK (luma.is_name(name)) NOT VALID,
    ADD CONSTRAINT luma_rule_scores_times CHECK (luma.is_time(created_at) AND luma.is_time(updated_at)) NOT VALID;
ALTER TABLE public.track_scores
    ADD CONSTRAINT luma_rule_track_scores_times CHECK (
        luma.is_finite(start_time) AND luma.is_finite(end_time) AND start_time >= 0 AND end_time >= start_time) NOT VALID,
    ADD CONSTRAINT luma_rule_track_scores_blend_mode CHECK (
        blend_mode IN ('replace', 'add', 'multiply', 'screen', 'max', 'min', 'subtract')) NOT VALID,
    ADD CONSTRAINT luma_rule_track_scores_args CHECK (jsonb_typeof(args) = 'object' AND luma.is_decodable_json(args)) NOT VALID;

-- ---- 1, 4. push ---------------------------------------------------------------------------
-- luma.apply_change: 0006's function with the clock-skew bound and neutral refusals.
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
    -- Bounded clock skew (0011): a stamp whose physical part is ahead of the server clock by
    -- more than the configured skew is refused, so no device ever absorbs it.
    IF substr(v_hlc, 1, 15)::bigint > luma.stamp_bound_ms() THEN
        RETURN luma.rejected(c, 'clock_skew', format(
            'stamp %s is %s ms ahead of the server clock; at most %s ms are allowed',
            v_hlc, substr(v_hlc, 1, 15)::bigint - luma.now_ms(), luma.max_clock_skew_ms()));
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
        RETURN luma.rejected(c, 'forbidden', 'not writable by this user');
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
            RETURN luma.rejected(c, 'forbidden', 'not writable by this user');
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
            RETURN luma.rejected(c, 'forbidden', 'not writable by this user');
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

CREATE OR REPLACE FUNCTION luma.push_one(c jsonb) RETURNS jsonb
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
                IF v_constraint LIKE '%\_pkey' THEN
                    -- an existing row the caller cannot see: the same neutral answer as
                    -- luma.apply_change gives (0011), never the key's text
                    RETURN luma.rejected(c, 'forbidden', 'not writable by this user');
                END IF;
                RETURN luma.rejected(c, 'conflict', v_msg);
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
    -- A stamp beyond the clock-skew bound (0011): the per-change path refuses it (clock_skew).
    IF (SELECT max(substr(c ->> 'hlc', 1, 15)::bigint) FROM jsonb_array_elements(p_run) e(c)) > luma.stamp_bound_ms() THEN
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
CREATE OR REPLACE FUNCTION public.luma_push(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
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


-- luma_push runs as luma_writer (the only role that may write the synced tables).
DO $$
BEGIN
    -- Superusers need nothing; a CREATEROLE owner (Supabase) needs luma_writer to have CREATE on
    -- the function's schema at the moment of ALTER ... OWNER.
    GRANT CREATE ON SCHEMA public TO luma_writer;
    ALTER FUNCTION public.luma_push(jsonb) OWNER TO luma_writer;
    REVOKE CREATE ON SCHEMA public FROM luma_writer;
END
$$;

-- ---- 6. pull ------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.luma_pull(p_table text, p_cursor text, p_limit integer, p_watermark text)
RETURNS json
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    v_xid xid8 := '0';
    v_seq bigint := 0;
    v_wm xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_lim integer := least(greatest(coalesce(p_limit, 1000), 1), 10000);
    v_parents_ok text;
    res json;
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_pull needs a signed-in user';
    END IF;
    SELECT * INTO s FROM luma.sync_tables WHERE table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('unknown table %s', p_table);
    END IF;
    -- 0011: validated before the casts (PostgreSQL 15 reads 'abc'::xid8 as 0).
    IF p_watermark IS NOT NULL AND p_watermark !~ '^[0-9]{1,20}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'malformed watermark';
    END IF;
    IF p_cursor IS NOT NULL AND p_cursor !~ '^[0-9]{1,20}:[0-9]{1,19}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'malformed cursor';
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
        RETURN json_build_object('rows', '[]'::json, 'cursor', NULL, 'has_more', false, 'resync_required', true);
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
                   CASE WHEN t.deleted_at IS NULL THEN row_to_json(r) END AS r, %s AS ok
            FROM %I.%I t CROSS JOIN LATERAL (SELECT %s) r
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
        SELECT json_build_object(
            'rows', coalesce(json_agg(json_build_object('key', k, 'hlc', hlc, 'deleted', deleted, 'row', r)
                                      ORDER BY rn) FILTER (WHERE rn < cut.stop), '[]'::json),
            'cursor', coalesce((array_agg(change_xid::text || ':' || change_seq::text ORDER BY rn DESC)
                                FILTER (WHERE rn < cut.stop))[1], $5),
            'has_more', cut.more AND NOT coalesce(cut.stalled, false),
            'resync_required', false)
        FROM cut LEFT JOIN num ON true
        GROUP BY cut.stop, cut.stalled, cut.more
    $q$, s.key_expr, v_parents_ok, s.schema_name, s.table_name,
       coalesce(s.row_json_cols, luma.row_json_cols(s.rel)))
    INTO res USING v_xid, v_seq, v_wm, v_lim, p_cursor;
    RETURN res;
END
$$;


-- ---- 2. who may call what -----------------------------------------------------------------
-- Every luma.* function: nobody but the owner, then exactly the grants below.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'luma'::regnamespace LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', f);
    END LOOP;
END
$$;
-- What the read policies and the invoker functions (luma_pull, luma_search_patterns,
-- luma_fetch_pattern, luma_memberships) of a signed-in user evaluate.
GRANT EXECUTE ON FUNCTION luma.my_venues(), luma.is_member(uuid), luma.ts_text(timestamptz),
    luma.f8_json(double precision), luma.f8_wire(double precision), luma.row_json_cols(regclass),
    luma.pattern_search_page(text, text, text, integer, integer, text, uuid)
    TO authenticated, luma_writer, service_role;
-- What luma_push (as luma_writer) calls, and the CHECK rules (checked for every writer).
GRANT EXECUTE ON FUNCTION luma.apply_change(jsonb), luma.push_run(text, jsonb), luma.push_one(jsonb),
    luma.tombstone_children(text, jsonb, text), luma.row_exists(text, jsonb),
    luma.outcome(jsonb, text), luma.rejected(jsonb, text, text),
    luma.max_clock_skew_ms(), luma.now_ms(), luma.stamp_bound_ms(),
    luma.is_name(text), luma.is_finite(double precision), luma.is_time(timestamptz),
    luma.is_decodable_json(jsonb), luma.is_text_array(jsonb), luma.is_beat_list(jsonb)
    TO luma_writer, service_role;
-- The public RPC surface: luma_push (definer, luma_writer), luma_pull, luma_watermark,
-- luma_leave_venue, luma_memberships, luma_search_patterns, luma_fetch_pattern (invoker) and
-- luma_join_venue (definer) for signed-in users; luma_purge_tombstones for service_role.
REVOKE ALL ON FUNCTION public.luma_push(jsonb), public.luma_pull(text, text, integer, text),
    public.luma_watermark(), public.luma_join_venue(text), public.luma_leave_venue(uuid),
    public.luma_memberships(), public.luma_purge_tombstones(interval),
    public.luma_search_patterns(text, text, text, integer, text), public.luma_fetch_pattern(uuid)
    FROM PUBLIC, anon;
