-- A resync is served to its end (issue 13, item 3). Until now any cursor below a table's purge
-- position (`luma.sync_tables.purged_xid, purged_seq`, raised by `luma_purge_tombstones`)
-- answered `resync_required`, including the cursors of the full pull from null that the
-- client starts for it: that pass was cut at its first page.
--
-- `luma_pull` (restated in full from 0011, CREATE OR REPLACE) now answers cursors of the form
-- `<xid>:<seq>:<purged xid>:<purged seq>`: the position of the page's last row and the purge
-- position the client's pass is consistent with (the table's purge position when the pass
-- started from null, carried on, and raised to the current one, by every later page). A
-- cursor is refused with `resync_required` only when its position AND its purge position are
-- both older than the table's current purge position: a pass started after the purge is
-- served to its end, a purge that happens during a pass (or between two pulls) and passes
-- the cursor still stops it. The older form `<xid>:<seq>` is still read, as knowing of no
-- purge (the rule before this migration). A client that forges a newer purge position only
-- skips a resync of its own replica.

CREATE OR REPLACE FUNCTION public.luma_pull(p_table text, p_cursor text, p_limit integer, p_watermark text)
RETURNS json
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    s luma.sync_tables;
    v_xid xid8 := '0';
    v_seq bigint := 0;
    -- The purge position the client's pass was consistent with (0012).
    v_mxid xid8 := '0';
    v_mseq bigint := 0;
    v_mark text;
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
    IF p_cursor IS NOT NULL AND p_cursor !~ '^[0-9]{1,20}:[0-9]{1,19}(:[0-9]{1,20}:[0-9]{1,19})?$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'malformed cursor';
    END IF;
    BEGIN
        IF p_cursor IS NOT NULL THEN
            v_xid := split_part(p_cursor, ':', 1)::xid8;
            v_seq := split_part(p_cursor, ':', 2)::bigint;
            IF split_part(p_cursor, ':', 3) <> '' THEN
                v_mxid := split_part(p_cursor, ':', 3)::xid8;
                v_mseq := split_part(p_cursor, ':', 4)::bigint;
            END IF;
        ELSE
            -- A pass from the start sees everything the purges left: it is consistent with
            -- the current purge position.
            v_mxid := s.purged_xid;
            v_mseq := s.purged_seq;
        END IF;
        IF p_watermark IS NOT NULL AND p_watermark::xid8 < v_wm THEN
            v_wm := p_watermark::xid8;
        END IF;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'malformed cursor or watermark';
    END;
    -- 0012: tombstones the client may not have seen are gone only when both its position and
    -- the purge position its pass started under are older than the current purge position.
    -- A pass from null after a purge is served to its end; a purge during the pass (or after
    -- the client's last pull) that passes its cursor stops it.
    IF p_cursor IS NOT NULL AND (v_xid, v_seq) < (s.purged_xid, s.purged_seq)
            AND (v_mxid, v_mseq) < (s.purged_xid, s.purged_seq) THEN
        RETURN json_build_object('rows', '[]'::json, 'cursor', NULL, 'has_more', false, 'resync_required', true);
    END IF;
    IF (v_mxid, v_mseq) < (s.purged_xid, s.purged_seq) THEN
        v_mxid := s.purged_xid;
        v_mseq := s.purged_seq;
    END IF;
    v_mark := ':' || v_mxid::text || ':' || v_mseq::text;
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
            'cursor', coalesce((array_agg(change_xid::text || ':' || change_seq::text || $6 ORDER BY rn DESC)
                                FILTER (WHERE rn < cut.stop))[1], $5),
            'has_more', cut.more AND NOT coalesce(cut.stalled, false),
            'resync_required', false)
        FROM cut LEFT JOIN num ON true
        GROUP BY cut.stop, cut.stalled, cut.more
    $q$, s.key_expr, v_parents_ok, s.schema_name, s.table_name,
       coalesce(s.row_json_cols, luma.row_json_cols(s.rel)))
    INTO res USING v_xid, v_seq, v_wm, v_lim, p_cursor, v_mark;
    RETURN res;
END
$$;
