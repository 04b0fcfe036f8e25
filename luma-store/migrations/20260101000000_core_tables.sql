-- Core tables of luma.db. Every synced table carries `hlc`: the hybrid logical clock stamp of
-- the write that produced the row's current state (set by the outbox triggers for local writes
-- and by the sync engine for pulled rows).

CREATE TABLE venues (
    id          TEXT PRIMARY KEY NOT NULL,
    uid         TEXT,
    name        TEXT NOT NULL CHECK (length(trim(name)) > 0),
    description TEXT NOT NULL DEFAULT '',
    share_code  TEXT UNIQUE CHECK (share_code IS NULL OR length(share_code) = 8),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    hlc         TEXT
);

CREATE TABLE fixtures (
    id           TEXT PRIMARY KEY NOT NULL,
    venue_id     TEXT NOT NULL REFERENCES venues (id) ON DELETE CASCADE,
    universe     INTEGER NOT NULL DEFAULT 1 CHECK (universe BETWEEN 1 AND 63999),
    address      INTEGER NOT NULL CHECK (address BETWEEN 1 AND 512),
    num_channels INTEGER NOT NULL CHECK (num_channels BETWEEN 1 AND 512),
    manufacturer TEXT NOT NULL DEFAULT '',
    model        TEXT NOT NULL DEFAULT '',
    mode_name    TEXT NOT NULL DEFAULT '',
    fixture_path TEXT,
    label        TEXT,
    pos_x REAL NOT NULL DEFAULT 0, pos_y REAL NOT NULL DEFAULT 0, pos_z REAL NOT NULL DEFAULT 0,
    rot_x REAL NOT NULL DEFAULT 0, rot_y REAL NOT NULL DEFAULT 0, rot_z REAL NOT NULL DEFAULT 0,
    hlc          TEXT
);
CREATE INDEX fixtures_venue ON fixtures (venue_id);

CREATE TABLE fixture_groups (
    id              TEXT PRIMARY KEY NOT NULL,
    venue_id        TEXT NOT NULL REFERENCES venues (id) ON DELETE CASCADE,
    name            TEXT NOT NULL CHECK (length(trim(name)) > 0),
    axis_lr         REAL CHECK (axis_lr IS NULL OR axis_lr BETWEEN -1 AND 1),
    axis_fb         REAL CHECK (axis_fb IS NULL OR axis_fb BETWEEN -1 AND 1),
    axis_ab         REAL CHECK (axis_ab IS NULL OR axis_ab BETWEEN -1 AND 1),
    display_order   INTEGER NOT NULL DEFAULT 0,
    tags            TEXT NOT NULL DEFAULT '[]',
    movement_config TEXT,
    hlc             TEXT,
    UNIQUE (venue_id, name)
);

CREATE TABLE fixture_group_members (
    fixture_id    TEXT NOT NULL REFERENCES fixtures (id) ON DELETE CASCADE,
    group_id      TEXT NOT NULL REFERENCES fixture_groups (id) ON DELETE CASCADE,
    display_order INTEGER NOT NULL DEFAULT 0,
    hlc           TEXT,
    PRIMARY KEY (fixture_id, group_id)
);
CREATE INDEX fixture_group_members_group ON fixture_group_members (group_id);

CREATE TABLE categories (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE patterns (
    id             TEXT PRIMARY KEY NOT NULL,
    uid            TEXT,
    name           TEXT NOT NULL CHECK (length(trim(name)) > 0),
    description    TEXT NOT NULL DEFAULT '',
    category       TEXT,
    is_verified    INTEGER NOT NULL DEFAULT 0 CHECK (is_verified IN (0, 1)),
    author_name    TEXT,
    forked_from_id TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    hlc            TEXT
);

CREATE TABLE implementations (
    id         TEXT PRIMARY KEY NOT NULL,
    pattern_id TEXT NOT NULL REFERENCES patterns (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    graph_json TEXT NOT NULL DEFAULT '{"nodes":[],"edges":[]}',
    hlc        TEXT
);
CREATE INDEX implementations_pattern ON implementations (pattern_id);

CREATE TABLE tracks (
    id               TEXT PRIMARY KEY NOT NULL,
    uid              TEXT,
    track_hash       TEXT,
    title            TEXT NOT NULL DEFAULT '',
    artist           TEXT,
    album            TEXT,
    track_number     INTEGER,
    disc_number      INTEGER,
    duration_seconds REAL,
    bpm              REAL,
    key              TEXT,
    file_path        TEXT,
    album_art_path   TEXT,
    album_art_mime   TEXT,
    album_art_ref    TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    hlc              TEXT
);
CREATE INDEX tracks_hash ON tracks (track_hash);

CREATE TABLE track_beats (
    track_id        TEXT PRIMARY KEY NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    beats           TEXT NOT NULL DEFAULT '[]',
    downbeats       TEXT NOT NULL DEFAULT '[]',
    bpm             REAL,
    downbeat_offset REAL NOT NULL DEFAULT 0,
    beats_per_bar   INTEGER NOT NULL DEFAULT 4,
    hlc             TEXT
);

CREATE TABLE track_roots (
    track_id   TEXT PRIMARY KEY NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    sections   TEXT NOT NULL DEFAULT '[]',
    logits_ref TEXT,
    hlc        TEXT
);

CREATE TABLE track_waveforms (
    track_id         TEXT PRIMARY KEY NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    preview_samples  BLOB NOT NULL,
    preview_colors   BLOB,
    preview_bands    BLOB,
    full_samples     BLOB,
    full_colors      BLOB,
    full_bands       BLOB,
    full_ref         TEXT,
    sample_rate      INTEGER NOT NULL,
    decoded_duration REAL NOT NULL,
    hlc              TEXT
);

CREATE TABLE track_stems (
    track_id  TEXT NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    stem_name TEXT NOT NULL,
    file_path TEXT NOT NULL,
    PRIMARY KEY (track_id, stem_name)
);

CREATE TABLE scores (
    id         TEXT PRIMARY KEY NOT NULL,
    uid        TEXT,
    track_id   TEXT NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    venue_id   TEXT NOT NULL REFERENCES venues (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    hlc        TEXT
);
CREATE INDEX scores_track ON scores (track_id);
CREATE INDEX scores_venue ON scores (venue_id);

CREATE TABLE track_scores (
    id         TEXT PRIMARY KEY NOT NULL,
    score_id   TEXT NOT NULL REFERENCES scores (id) ON DELETE CASCADE,
    pattern_id TEXT NOT NULL REFERENCES patterns (id) ON DELETE CASCADE,
    start_time REAL NOT NULL CHECK (start_time >= 0),
    end_time   REAL NOT NULL CHECK (end_time >= start_time),
    z_index    INTEGER NOT NULL DEFAULT 0,
    blend_mode TEXT NOT NULL DEFAULT 'replace',
    args       TEXT NOT NULL DEFAULT '{}',
    hlc        TEXT
);
CREATE INDEX track_scores_score ON track_scores (score_id);
CREATE INDEX track_scores_pattern ON track_scores (pattern_id);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
