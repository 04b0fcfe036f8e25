-- luma_join_venue: an unknown share code raises SQLSTATE PT404 instead of P0002, so PostgREST
-- answers HTTP 404 instead of 500.
--
-- Why PT404: PostgREST's SQLSTATE-to-HTTP table (docs.postgrest.org, "Errors", "HTTP Status
-- Codes") maps P0001 to 400 but every other P0* (P0002 no_data_found included) to 500, which
-- reads as a server failure that may pass on retry. The only standard codes it answers 404 for
-- are 42883 (undefined function) and 42P01 (undefined table), which would misreport the
-- share code as a missing function or table. The same page ("Custom Errors", "RAISE errors
-- with HTTP Status Codes") lets a function choose the status with a SQLSTATE of the form
-- PTxyz: PT404 answers 404 with {"code": "PT404", "message", "details", "hint"}. Clients map
-- PT404 to a permanent "not found" (luma-sync/src/sqlstate.rs); on a plain PostgreSQL it is an
-- ordinary custom SQLSTATE.
--
-- Same definition as 0004 otherwise (CREATE OR REPLACE keeps the owner and the grants).

-- Join a venue by its share code; answers {"venue_id": ...}.
CREATE OR REPLACE FUNCTION public.luma_join_venue(p_code text) RETURNS jsonb
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
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no venue has this share code';
    END IF;
    IF v_owner <> u THEN
        INSERT INTO public.venue_members (venue_id, user_id) VALUES (v, u) ON CONFLICT DO NOTHING;
    END IF;
    RETURN jsonb_build_object('venue_id', v);
END
$$;
