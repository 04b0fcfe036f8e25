-- Community pattern sharing: the publishing rule, search (luma_search_patterns) and the
-- read of one pattern with its implementations for importing (luma_fetch_pattern).
--
-- Publishing rule (owner publishes): a pattern is a community pattern while its `is_verified`
-- is true, and only its owner sets or clears the flag, by writing their own row (a push or a
-- direct update). Clearing it (unpublishing) hides the pattern from other users again.
-- What enforces it, for role `authenticated`:
--   * 0003 `owner_or_public` policies: insert / update / delete need `uid = auth.uid()`, so a
--     user cannot write (and therefore cannot verify or unverify) another user's pattern; a
--     pushed row of a pattern the user cannot see is answered `forbidden` (luma.row_exists);
--   * 0002 `luma_guard_owner`: a new row's owner is the signed-in user and never changes, so a
--     pushed row cannot claim another owner to publish in their name;
--   * here, `luma_guard_publish`: the same rule stated on the flag itself, so it also holds for
--     any future policy that widens who may update a pattern (for example venue editors).
-- Author name: search answers the owner's `profiles.display_name`, falling back to the row's
-- `author_name` when the owner has no (or an empty) profile name.

CREATE FUNCTION luma.guard_publish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user IN ('authenticated', 'anon')
       AND NEW.is_verified IS DISTINCT FROM (CASE WHEN TG_OP = 'INSERT' THEN false ELSE OLD.is_verified END)
       AND NEW.uid IS DISTINCT FROM auth.uid() THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'only the owner of a pattern publishes or unpublishes it';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER luma_guard_publish BEFORE INSERT OR UPDATE ON public.patterns
    FOR EACH ROW EXECUTE FUNCTION luma.guard_publish();

-- Indexes. Text search: trigram GIN indexes on name and description when pg_trgm can be
-- installed (Supabase has it, in schema `extensions`); otherwise btree on lower(name), which
-- serves only the ordering. Browsing: the tabs' order without a query, and the owner.
DO $$
DECLARE
    v_schema text;
BEGIN
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
        END IF;
    EXCEPTION WHEN insufficient_privilege OR feature_not_supported OR undefined_file THEN
        RAISE NOTICE 'pg_trgm is not available: pattern search scans the table';
    END;
    SELECT n.nspname INTO v_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF v_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS patterns_name_trgm ON public.patterns USING gin (name %I.gin_trgm_ops)', v_schema);
        EXECUTE format('CREATE INDEX IF NOT EXISTS patterns_description_trgm ON public.patterns USING gin (description %I.gin_trgm_ops)', v_schema);
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS patterns_lower_name ON public.patterns ((lower(name) COLLATE "C"), id)
    WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS patterns_verified_lower_name ON public.patterns ((lower(name) COLLATE "C"), id)
    WHERE deleted_at IS NULL AND is_verified;
CREATE INDEX IF NOT EXISTS patterns_uid ON public.patterns (uid);

-- `s` as a LIKE pattern matching itself literally (escape character: backslash).
CREATE FUNCTION luma.like_escape(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT replace(replace(replace(s, '\', '\\'), '%', '\%'), '_', '\_')
$$;

-- One page of candidate ids for luma_search_patterns, in search order: (rank, lower(name) in
-- byte order, id) after the cursor (p_rank, p_name, p_id; p_rank NULL = from the start), at most
-- p_limit + 1 rows. Rank 0: the name matches p_query; rank 1: only the description does (an empty
-- query matches every row, with rank 0). Visibility is stated explicitly and is never wider than
-- the read policy: live rows with `is_verified OR uid = auth.uid()`, narrowed by the tab.
-- SECURITY DEFINER only so the planner may use the indexes: under row-level security
-- PostgreSQL uses no index for a non-leakproof operator such as ILIKE, so every search would
-- scan the table. luma_search_patterns (SECURITY INVOKER) reads the rows of these ids back from
-- `patterns`, where the policies apply again.
CREATE FUNCTION luma.pattern_search_page(p_tab text, p_query text, p_category text, p_limit integer,
                                         p_rank integer, p_name text, p_id uuid)
RETURNS TABLE (id uuid, rank integer, sort_name text)
LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 50 SET search_path = '' AS $$
DECLARE
    v_me uuid := auth.uid();
    v_where text;
    v_parts text[] := '{}';
BEGIN
    IF v_me IS NULL THEN
        RETURN;
    END IF;
    p_limit := least(greatest(coalesce(p_limit, 50), 1), 200);
    v_where := 'p.deleted_at IS NULL AND ' || CASE p_tab
        WHEN 'verified' THEN 'p.is_verified'
        WHEN 'mine' THEN 'p.uid = $1'
        ELSE '(p.is_verified OR p.uid = $1)'
    END;
    IF p_category IS NOT NULL THEN
        v_where := v_where || ' AND p.category = $3';
    END IF;
    -- rank 0
    IF p_rank IS NULL OR p_rank = 0 THEN
        v_parts := v_parts || format(
            '(SELECT p.id, 0 AS rank, lower(p.name) COLLATE "C" AS sort_name FROM public.patterns p '
            'WHERE %s%s%s ORDER BY lower(p.name) COLLATE "C", p.id LIMIT $4 + 1)',
            v_where,
            CASE WHEN coalesce(p_query, '') = '' THEN '' ELSE ' AND p.name ILIKE $2' END,
            CASE WHEN p_rank = 0 THEN ' AND (lower(p.name) COLLATE "C", p.id) > ($6 COLLATE "C", $7)' ELSE '' END);
    END IF;
    -- rank 1
    IF coalesce(p_query, '') <> '' THEN
        v_parts := v_parts || format(
            '(SELECT p.id, 1 AS rank, lower(p.name) COLLATE "C" AS sort_name FROM public.patterns p '
            'WHERE %s AND p.description ILIKE $2 AND NOT p.name ILIKE $2%s '
            'ORDER BY lower(p.name) COLLATE "C", p.id LIMIT $4 + 1)',
            v_where,
            CASE WHEN p_rank = 1 THEN ' AND (lower(p.name) COLLATE "C", p.id) > ($6 COLLATE "C", $7)' ELSE '' END);
    END IF;
    IF cardinality(v_parts) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format('SELECT x.id, x.rank, x.sort_name::text FROM (%s) x '
                                'ORDER BY x.rank, x.sort_name COLLATE "C", x.id LIMIT $4 + 1',
                                array_to_string(v_parts, ' UNION ALL '))
        USING v_me, '%' || luma.like_escape(p_query) || '%', p_category, p_limit, p_rank, p_name, p_id;
END
$$;
REVOKE ALL ON FUNCTION luma.pattern_search_page(text, text, text, integer, integer, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION luma.pattern_search_page(text, text, text, integer, integer, text, uuid)
    TO authenticated, service_role;

-- Search one tab of patterns:
--   p_tab      'verified' (community patterns: is_verified, any owner, own included),
--              'mine' (the caller's own, verified or not), 'all' (the union of both);
--   p_query    text matched case-insensitively and literally (no wildcard or filter syntax)
--              in name or description; '' or NULL matches everything;
--   p_category exact category, NULL for any;
--   p_limit    page size, clamped to 1..200 (NULL: 50);
--   p_cursor   NULL for the first page, else the previous page's next_cursor.
-- Only live rows, only rows the caller may read (SECURITY INVOKER: row-level security), never
-- rows readable only through a score of a shared venue (they are not published).
-- Order: name matches first (rank 0), then description-only matches (rank 1); within a rank
-- lower(name) in byte order, then id. The cursor is that triple of the last row served
-- (`[rank, "lower name", "id"]` as JSON text, opaque to clients): pages never repeat or skip
-- a row that keeps its name, flags and category meanwhile.
-- Answers {"results": [{id, name, description, category, author_name, updated_at,
-- is_verified, uid}], "next_cursor": text or null}.
CREATE FUNCTION public.luma_search_patterns(p_tab text, p_query text, p_category text,
                                            p_limit integer, p_cursor text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    v_q text := coalesce(p_query, '');
    v_lim integer := least(greatest(coalesce(p_limit, 50), 1), 200);
    v_c jsonb;
    v_rank integer;
    v_name text;
    v_id uuid;
    v_ids uuid[];
    v_next text;
    v_more boolean;
    res jsonb;
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_search_patterns needs a signed-in user';
    END IF;
    IF p_tab IS NULL OR p_tab NOT IN ('verified', 'mine', 'all') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'p_tab is one of verified, mine, all';
    END IF;
    IF length(v_q) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'the query is longer than 200 characters';
    END IF;
    IF p_cursor IS NOT NULL THEN
        BEGIN
            v_c := p_cursor::jsonb;
            IF jsonb_typeof(v_c) = 'array' AND jsonb_array_length(v_c) = 3 THEN
                v_rank := (v_c ->> 0)::integer;
                v_name := v_c ->> 1;
                v_id := (v_c ->> 2)::uuid;
            END IF;
        EXCEPTION WHEN others THEN
            v_rank := NULL;
        END;
        IF v_rank IS NULL OR v_rank NOT IN (0, 1) OR v_name IS NULL OR v_id IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'malformed search cursor';
        END IF;
    END IF;

    SELECT coalesce(array_agg(c.id ORDER BY c.rank, c.sort_name COLLATE "C", c.id), '{}'),
           (array_agg(jsonb_build_array(c.rank, c.sort_name, c.id)::text
                      ORDER BY c.rank, c.sort_name COLLATE "C", c.id))[v_lim],
           count(*) > v_lim
    INTO v_ids, v_next, v_more
    FROM luma.pattern_search_page(p_tab, v_q, p_category, v_lim, v_rank, v_name, v_id) c;
    v_ids := v_ids[1:v_lim];

    SELECT jsonb_build_object(
        'results', coalesce(jsonb_agg(jsonb_build_object(
            'id', p.id, 'name', p.name, 'description', p.description, 'category', p.category,
            'author_name', coalesce(nullif(pr.display_name, ''), p.author_name),
            'updated_at', luma.ts_text(p.updated_at), 'is_verified', p.is_verified, 'uid', p.uid)
            ORDER BY array_position(v_ids, p.id)), '[]'::jsonb),
        'next_cursor', CASE WHEN v_more THEN v_next END)
    INTO res
    FROM public.patterns p
    LEFT JOIN public.profiles pr ON pr.id = p.uid
    WHERE p.id = ANY (v_ids) AND p.deleted_at IS NULL;
    RETURN res;
END
$$;

-- One pattern the caller may read, with its live implementations, in the wire form of
-- luma_pull rows: {"pattern": row or null, "implementations": [row, ...]} (implementations by
-- id). A client imports it by writing a copy with new ids into its own library.
CREATE FUNCTION public.luma_fetch_pattern(p_pattern uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = '' AS $$
DECLARE
    v_pat text;
    v_imp text;
    v_row jsonb;
    v_impls jsonb;
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'luma_fetch_pattern needs a signed-in user';
    END IF;
    SELECT row_expr INTO STRICT v_pat FROM luma.sync_tables WHERE table_name = 'patterns';
    SELECT row_expr INTO STRICT v_imp FROM luma.sync_tables WHERE table_name = 'implementations';
    EXECUTE format('SELECT %s FROM public.patterns t WHERE t.id = $1 AND t.deleted_at IS NULL', v_pat)
        INTO v_row USING p_pattern;
    IF v_row IS NULL THEN
        RETURN jsonb_build_object('pattern', NULL, 'implementations', '[]'::jsonb);
    END IF;
    EXECUTE format('SELECT coalesce(jsonb_agg(%s ORDER BY t.id), ''[]'') FROM public.implementations t '
                   'WHERE t.pattern_id = $1 AND t.deleted_at IS NULL', v_imp)
        INTO v_impls USING p_pattern;
    RETURN jsonb_build_object('pattern', v_row, 'implementations', v_impls);
END
$$;

REVOKE ALL ON FUNCTION public.luma_search_patterns(text, text, text, integer, text),
    public.luma_fetch_pattern(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.luma_search_patterns(text, text, text, integer, text),
    public.luma_fetch_pattern(uuid) TO authenticated, service_role;
