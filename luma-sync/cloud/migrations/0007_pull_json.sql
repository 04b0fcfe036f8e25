-- luma_pull builds its page as `json` text instead of `jsonb`: the wire is the same (PROTOCOL.md),
-- but building a jsonb value per row (to_jsonb of the row, minus the sync columns, merged with
-- re-encoded floats, then jsonb_agg) cost about 75 ms per 1,000 fixtures, and the page was
-- turned into text for the client anyway. With `row_to_json` over the row's data columns, floats
-- formatted by `luma.f8_wire` (inlined: plain SQL, immutable) and `json_agg`, a page of 1,000
-- costs about 7 ms on the server.
--
-- The registry keeps, per table, the select list of the row's wire form (`row_json_cols`),
-- computed from the catalog by a trigger whenever `luma.enable_sync` writes the entry (and
-- filled here for the tables already registered), so plugin tables get it with no extra call.

-- A float8 as a JSON number that deserializes to the same f64 and keeps a fraction for integral
-- values (2.0, not 2), as serde_json writes an f64; non-finite values as JSON strings (as
-- to_jsonb does). Same values as luma.f8_json (0002), as json, and cheap: the planner inlines it.
-- float8's text output is the shortest exact form (extra_float_digits > 0, the default); it
-- uses exponent notation from 1e15 on, which a JSON reader takes as a float already.
CREATE FUNCTION luma.f8_wire(x double precision) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE
        WHEN x = trunc(x) AND abs(x) < 1e15 THEN x::text || '.0'
        WHEN abs(x) <= 1.7976931348623157e308 THEN x::text
        ELSE '"' || x::text || '"'
    END)::json
$$;

-- The select list of the wire form of row alias `t` of a table (its data columns, excluding
-- the sync columns): bytea as hex text, timestamptz as luma.ts_text, float8 as luma.f8_wire.
-- `row_to_json` of a sub-select with this list is the row as pull serves it.
CREATE FUNCTION luma.row_json_cols(p_rel regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT string_agg(
        CASE a.atttypid
            WHEN 'bytea'::regtype THEN format('encode(t.%I, ''hex'') AS %I', a.attname, a.attname)
            WHEN 'timestamptz'::regtype THEN format('luma.ts_text(t.%I) AS %I', a.attname, a.attname)
            WHEN 'float8'::regtype THEN format('luma.f8_wire(t.%I) AS %I', a.attname, a.attname)
            ELSE format('t.%I AS %I', a.attname, a.attname)
        END, ', ' ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('hlc', 'deleted_at', 'change_xid', 'change_seq')
$$;

ALTER TABLE luma.sync_tables ADD COLUMN row_json_cols text;

CREATE FUNCTION luma.fill_row_json_cols() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    NEW.row_json_cols := luma.row_json_cols(NEW.rel);
    RETURN NEW;
END
$$;
CREATE TRIGGER luma_row_json_cols BEFORE INSERT OR UPDATE OF rel, data_cols ON luma.sync_tables
    FOR EACH ROW EXECUTE FUNCTION luma.fill_row_json_cols();

UPDATE luma.sync_tables SET row_json_cols = luma.row_json_cols(rel);

-- The same function as in 0004 (arguments, cursor, watermark, consistent cut, resync), answering
-- `json`.
DROP FUNCTION public.luma_pull(text, text, integer, text);
CREATE FUNCTION public.luma_pull(p_table text, p_cursor text, p_limit integer, p_watermark text)
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

REVOKE ALL ON FUNCTION public.luma_pull(text, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.luma_pull(text, text, integer, text) TO authenticated, service_role;
