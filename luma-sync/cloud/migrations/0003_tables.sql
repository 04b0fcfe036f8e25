-- The synced tables (mirroring luma-store's SQLite schema without local-only columns), the
-- server-only tables venue_members and profiles, and their row-level security.
-- Sync columns (hlc, deleted_at, change_xid, change_seq) are added by luma.enable_sync.

CREATE TABLE public.venues (
    id          uuid PRIMARY KEY,
    uid         uuid NOT NULL DEFAULT auth.uid(),
    name        text NOT NULL CHECK (length(trim(name)) > 0),
    description text NOT NULL DEFAULT '',
    share_code  text UNIQUE CHECK (share_code IS NULL OR length(share_code) = 8),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE public.venue_members (
    venue_id  uuid NOT NULL REFERENCES public.venues (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL,
    role      text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'editor')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, user_id)
);
CREATE INDEX venue_members_user ON public.venue_members (user_id);

CREATE TABLE public.profiles (
    id           uuid PRIMARY KEY DEFAULT auth.uid(),
    display_name text NOT NULL DEFAULT ''
);

-- Owner or member of a venue (tombstoned venues included, so their tombstones reach members).
-- SECURITY DEFINER: policies of venues and venue_members call it without recursing.
CREATE FUNCTION luma.is_member(v uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT EXISTS (SELECT 1 FROM public.venues WHERE id = v AND uid = auth.uid())
        OR EXISTS (SELECT 1 FROM public.venue_members WHERE venue_id = v AND user_id = auth.uid())
$$;
GRANT EXECUTE ON FUNCTION luma.is_member(uuid) TO authenticated, service_role;

-- The venues the signed-in user owns or belongs to; policies use `x IN (SELECT luma.my_venues())`
-- so the set is computed once per statement.
CREATE FUNCTION luma.my_venues() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT id FROM public.venues WHERE uid = auth.uid()
    UNION
    SELECT venue_id FROM public.venue_members WHERE user_id = auth.uid()
$$;
GRANT EXECUTE ON FUNCTION luma.my_venues() TO authenticated, service_role;

CREATE TABLE public.fixtures (
    id           uuid PRIMARY KEY,
    venue_id     uuid NOT NULL REFERENCES public.venues (id) ON DELETE CASCADE,
    universe     bigint NOT NULL DEFAULT 1 CHECK (universe BETWEEN 1 AND 63999),
    address      bigint NOT NULL CHECK (address BETWEEN 1 AND 512),
    num_channels bigint NOT NULL CHECK (num_channels BETWEEN 1 AND 512),
    manufacturer text NOT NULL DEFAULT '',
    model        text NOT NULL DEFAULT '',
    mode_name    text NOT NULL DEFAULT '',
    label        text,
    pos_x double precision NOT NULL DEFAULT 0,
    pos_y double precision NOT NULL DEFAULT 0,
    pos_z double precision NOT NULL DEFAULT 0,
    rot_x double precision NOT NULL DEFAULT 0,
    rot_y double precision NOT NULL DEFAULT 0,
    rot_z double precision NOT NULL DEFAULT 0
);
CREATE INDEX fixtures_venue ON public.fixtures (venue_id);

CREATE TABLE public.fixture_groups (
    id              uuid PRIMARY KEY,
    venue_id        uuid NOT NULL REFERENCES public.venues (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(trim(name)) > 0),
    axis_lr         double precision CHECK (axis_lr BETWEEN -1 AND 1),
    axis_fb         double precision CHECK (axis_fb BETWEEN -1 AND 1),
    axis_ab         double precision CHECK (axis_ab BETWEEN -1 AND 1),
    display_order   bigint NOT NULL DEFAULT 0,
    tags            jsonb NOT NULL DEFAULT '[]',
    movement_config jsonb
);
CREATE INDEX fixture_groups_venue ON public.fixture_groups (venue_id);

CREATE TABLE public.fixture_group_members (
    fixture_id    uuid NOT NULL REFERENCES public.fixtures (id) ON DELETE CASCADE,
    group_id      uuid NOT NULL REFERENCES public.fixture_groups (id) ON DELETE CASCADE,
    display_order bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (fixture_id, group_id)
);
CREATE INDEX fixture_group_members_group ON public.fixture_group_members (group_id);

CREATE TABLE public.patterns (
    id             uuid PRIMARY KEY,
    uid            uuid NOT NULL DEFAULT auth.uid(),
    name           text NOT NULL CHECK (length(trim(name)) > 0),
    description    text NOT NULL DEFAULT '',
    category       text,
    is_verified    boolean NOT NULL DEFAULT false,
    author_name    text,
    forked_from_id uuid,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE public.implementations (
    id         uuid PRIMARY KEY,
    pattern_id uuid NOT NULL REFERENCES public.patterns (id) ON DELETE CASCADE,
    name       text NOT NULL,
    graph_json jsonb NOT NULL DEFAULT '{"nodes":[],"edges":[]}'
);
CREATE INDEX implementations_pattern ON public.implementations (pattern_id);

CREATE TABLE public.tracks (
    id               uuid PRIMARY KEY,
    uid              uuid NOT NULL DEFAULT auth.uid(),
    track_hash       text,
    title            text NOT NULL DEFAULT '',
    artist           text,
    album            text,
    track_number     bigint,
    disc_number      bigint,
    duration_seconds double precision,
    bpm              double precision,
    key              text,
    album_art_mime   text,
    album_art_ref    text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX tracks_hash ON public.tracks (track_hash);

CREATE TABLE public.track_beats (
    track_id        uuid PRIMARY KEY REFERENCES public.tracks (id) ON DELETE CASCADE,
    beats           jsonb NOT NULL DEFAULT '[]',
    downbeats       jsonb NOT NULL DEFAULT '[]',
    bpm             double precision,
    downbeat_offset double precision NOT NULL DEFAULT 0,
    beats_per_bar   bigint NOT NULL DEFAULT 4
);

CREATE TABLE public.track_roots (
    track_id   uuid PRIMARY KEY REFERENCES public.tracks (id) ON DELETE CASCADE,
    sections   jsonb NOT NULL DEFAULT '[]',
    logits_ref text
);

CREATE TABLE public.track_waveforms (
    track_id         uuid PRIMARY KEY REFERENCES public.tracks (id) ON DELETE CASCADE,
    preview_samples  bytea NOT NULL,
    preview_colors   bytea,
    preview_bands    bytea,
    full_ref         text,
    sample_rate      bigint NOT NULL,
    decoded_duration double precision NOT NULL
);

CREATE TABLE public.scores (
    id         uuid PRIMARY KEY,
    uid        uuid NOT NULL DEFAULT auth.uid(),
    track_id   uuid NOT NULL REFERENCES public.tracks (id) ON DELETE CASCADE,
    venue_id   uuid NOT NULL REFERENCES public.venues (id) ON DELETE CASCADE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX scores_track ON public.scores (track_id);
CREATE INDEX scores_venue ON public.scores (venue_id);

CREATE TABLE public.track_scores (
    id         uuid PRIMARY KEY,
    score_id   uuid NOT NULL REFERENCES public.scores (id) ON DELETE CASCADE,
    pattern_id uuid NOT NULL REFERENCES public.patterns (id) ON DELETE CASCADE,
    start_time double precision NOT NULL CHECK (start_time >= 0),
    end_time   double precision NOT NULL CHECK (end_time >= start_time),
    z_index    bigint NOT NULL DEFAULT 0,
    blend_mode text NOT NULL DEFAULT 'replace',
    args       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX track_scores_score ON public.track_scores (score_id);
CREATE INDEX track_scores_pattern ON public.track_scores (pattern_id);

-- Registration, parents first (a plugin table is one more call like these).
SELECT luma.enable_sync('public.venues', 'venue', p_owner => 'uid');
SELECT luma.enable_sync('public.fixtures', 'in_venue', 'venue_id');
SELECT luma.enable_sync('public.fixture_groups', 'in_venue', 'venue_id');
SELECT luma.enable_sync('public.fixture_group_members', 'parent', 'fixture_id');
SELECT luma.enable_sync('public.patterns', 'owner_or_public', p_owner => 'uid', p_flag => 'is_verified');
SELECT luma.enable_sync('public.implementations', 'parent', 'pattern_id');
SELECT luma.enable_sync('public.tracks', 'owner', p_owner => 'uid');
SELECT luma.enable_sync('public.track_beats', 'parent', 'track_id');
SELECT luma.enable_sync('public.track_roots', 'parent', 'track_id');
SELECT luma.enable_sync('public.track_waveforms', 'parent', 'track_id');
SELECT luma.enable_sync('public.scores', 'in_venue', 'venue_id', p_owner => 'uid');
SELECT luma.enable_sync('public.track_scores', 'parent', 'score_id');

-- A group name is unique among the live groups of its venue.
CREATE UNIQUE INDEX fixture_groups_venue_name ON public.fixture_groups (venue_id, name) WHERE deleted_at IS NULL;

-- Tracks and patterns used by a score of a venue the user belongs to are readable, so a
-- member's local foreign keys resolve.
CREATE POLICY luma_select_via_score ON public.tracks FOR SELECT TO authenticated USING (
    id IN (SELECT s.track_id FROM public.scores s WHERE s.venue_id IN (SELECT luma.my_venues())));
CREATE POLICY luma_select_via_score ON public.patterns FOR SELECT TO authenticated USING (
    id IN (SELECT ts.pattern_id FROM public.track_scores ts JOIN public.scores s ON s.id = ts.score_id
           WHERE s.venue_id IN (SELECT luma.my_venues())));

-- Only the venue's owner tombstones (or restores) it or changes its share code.
CREATE FUNCTION luma.guard_venue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user IN ('authenticated', 'anon')
       AND OLD.uid IS DISTINCT FROM auth.uid()
       AND (NEW.share_code IS DISTINCT FROM OLD.share_code OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'only the owner of a venue deletes it or changes its share code';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER luma_guard_venue BEFORE UPDATE ON public.venues
    FOR EACH ROW EXECUTE FUNCTION luma.guard_venue();

-- venue_members: a member sees the venue's members; joining goes through luma_join_venue; a
-- member leaves (deletes their own row); the venue's owner removes anyone.
ALTER TABLE public.venue_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.venue_members FORCE ROW LEVEL SECURITY;
CREATE POLICY luma_select ON public.venue_members FOR SELECT TO authenticated
    USING (user_id = (SELECT auth.uid()) OR venue_id IN (SELECT luma.my_venues()));
CREATE POLICY luma_delete ON public.venue_members FOR DELETE TO authenticated
    USING (user_id = auth.uid()
           OR EXISTS (SELECT 1 FROM public.venues v WHERE v.id = venue_id AND v.uid = auth.uid()));
CREATE POLICY luma_update ON public.venue_members FOR UPDATE TO authenticated
    USING (EXISTS (SELECT 1 FROM public.venues v WHERE v.id = venue_id AND v.uid = auth.uid()))
    WITH CHECK (EXISTS (SELECT 1 FROM public.venues v WHERE v.id = venue_id AND v.uid = auth.uid()));
REVOKE ALL ON public.venue_members FROM anon;
GRANT SELECT, DELETE, UPDATE (role) ON public.venue_members TO authenticated;
GRANT ALL ON public.venue_members TO service_role;

-- profiles: every signed-in user reads display names; each user writes their own.
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles FORCE ROW LEVEL SECURITY;
CREATE POLICY luma_select ON public.profiles FOR SELECT TO authenticated USING (true);
CREATE POLICY luma_insert ON public.profiles FOR INSERT TO authenticated WITH CHECK (id = auth.uid());
CREATE POLICY luma_update ON public.profiles FOR UPDATE TO authenticated
    USING (id = auth.uid()) WITH CHECK (id = auth.uid());
CREATE POLICY luma_delete ON public.profiles FOR DELETE TO authenticated USING (id = auth.uid());
REVOKE ALL ON public.profiles FROM anon;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.profiles TO authenticated;
GRANT ALL ON public.profiles TO service_role;
