//! Tracks and their analysis data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{TrackId, UserId};
use crate::record::{Record, Syncable};
use crate::spec::{Column, Parent, Scope, TableSpec};
use crate::validate;

/// An audio track's metadata. The audio file itself never syncs; `file_path` and
/// `album_art_path` stay on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Id.
    pub id: TrackId,
    /// Owner.
    pub uid: Option<UserId>,
    /// SHA-256 of the audio bytes, 64 lower-case hex digits (not unique).
    pub track_hash: Option<String>,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Track number on the disc.
    pub track_number: Option<i64>,
    /// Disc number.
    pub disc_number: Option<i64>,
    /// Duration in seconds.
    pub duration_seconds: Option<f64>,
    /// Tempo.
    pub bpm: Option<f64>,
    /// Musical key.
    pub key: Option<String>,
    /// Path of the audio file on this device (local only).
    pub file_path: Option<String>,
    /// Path of the album art on this device (local only).
    pub album_art_path: Option<String>,
    /// MIME type of the album art.
    pub album_art_mime: Option<String>,
    /// Storage reference (content hash key) of the album art, set by file sync.
    pub album_art_ref: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

impl Track {
    /// A new track with this title.
    pub fn new(title: impl Into<String>) -> Self {
        let now = crate::now();
        Self {
            id: TrackId::new(),
            uid: None,
            track_hash: None,
            title: title.into(),
            artist: None,
            album: None,
            track_number: None,
            disc_number: None,
            duration_seconds: None,
            bpm: None,
            key: None,
            file_path: None,
            album_art_path: None,
            album_art_mime: None,
            album_art_ref: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Record for Track {
    const SPEC: TableSpec = TableSpec {
        name: "tracks",
        columns: &[
            Column::uuid("id"),
            Column::uuid("uid"),
            Column::text("track_hash"),
            Column::text("title"),
            Column::text("artist"),
            Column::text("album"),
            Column::integer("track_number"),
            Column::integer("disc_number"),
            Column::real("duration_seconds"),
            Column::real("bpm"),
            Column::text("key"),
            Column::text("file_path").local(),
            Column::text("album_art_path").local(),
            Column::text("album_art_mime"),
            Column::text("album_art_ref"),
            Column::timestamp("created_at"),
            Column::timestamp("updated_at"),
        ],
        key: &["id"],
        parents: &[],
        scope: Scope::Owner { column: "uid" },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        const T: &str = "tracks";
        validate::no_nul_all(
            T,
            &[
                ("track_hash", self.track_hash.as_deref()),
                ("title", Some(&self.title)),
                ("artist", self.artist.as_deref()),
                ("album", self.album.as_deref()),
                ("key", self.key.as_deref()),
                ("file_path", self.file_path.as_deref()),
                ("album_art_path", self.album_art_path.as_deref()),
                ("album_art_mime", self.album_art_mime.as_deref()),
                ("album_art_ref", self.album_art_ref.as_deref()),
            ],
        )?;
        if let Some(hash) = &self.track_hash {
            if hash.len() != 64
                || !hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(ValidationError::Format {
                    table: T,
                    field: "track_hash",
                    message: "a SHA-256 is 64 lower-case hex digits".into(),
                });
            }
        }
        if let Some(d) = self.duration_seconds {
            validate::real_range(T, "duration_seconds", d, 0.0, f64::MAX)?;
        }
        if let Some(bpm) = self.bpm {
            validate::real_range(T, "bpm", bpm, 1.0, 1000.0)?;
        }
        for (field, v) in [
            ("track_number", self.track_number),
            ("disc_number", self.disc_number),
        ] {
            if let Some(v) = v {
                validate::int_range(T, field, v, 0, i64::from(u32::MAX))?;
            }
        }
        Ok(())
    }
}
impl Syncable for Track {}

/// The beat grid of a track (one row per track).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackBeats {
    /// The track.
    pub track_id: TrackId,
    /// Beat positions in seconds, ascending.
    pub beats: Vec<f64>,
    /// Downbeat positions in seconds, ascending.
    pub downbeats: Vec<f64>,
    /// Tempo of the grid.
    pub bpm: Option<f64>,
    /// Offset of the first downbeat in beats.
    pub downbeat_offset: f64,
    /// Beats per bar (at least 1).
    pub beats_per_bar: i64,
}

impl Record for TrackBeats {
    const SPEC: TableSpec = TableSpec {
        name: "track_beats",
        columns: &[
            Column::uuid("track_id"),
            Column::json("beats"),
            Column::json("downbeats"),
            Column::real("bpm"),
            Column::real("downbeat_offset"),
            Column::integer("beats_per_bar"),
        ],
        key: &["track_id"],
        parents: &[Parent::new("track_id", "tracks")],
        scope: Scope::Parent {
            column: "track_id",
            table: "tracks",
        },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        const T: &str = "track_beats";
        for (field, list) in [("beats", &self.beats), ("downbeats", &self.downbeats)] {
            let mut prev = f64::NEG_INFINITY;
            for &b in list {
                validate::real_range(T, field, b, 0.0, f64::MAX)?;
                if b < prev {
                    return Err(ValidationError::Inconsistent {
                        table: T,
                        message: format!("{field} must be ascending"),
                    });
                }
                prev = b;
            }
        }
        validate::finite(T, "downbeat_offset", self.downbeat_offset)?;
        validate::int_range(T, "beats_per_bar", self.beats_per_bar, 1, 64)?;
        if let Some(bpm) = self.bpm {
            validate::real_range(T, "bpm", bpm, 1.0, 1000.0)?;
        }
        Ok(())
    }
}
impl Syncable for TrackBeats {}

/// Chord-root analysis of a track (one row per track).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRoots {
    /// The track.
    pub track_id: TrackId,
    /// Sections (JSON produced by the analyser).
    pub sections: serde_json::Value,
    /// Storage reference of the logits file.
    pub logits_ref: Option<String>,
}

impl Record for TrackRoots {
    const SPEC: TableSpec = TableSpec {
        name: "track_roots",
        columns: &[
            Column::uuid("track_id"),
            Column::json("sections"),
            Column::text("logits_ref"),
        ],
        key: &["track_id"],
        parents: &[Parent::new("track_id", "tracks")],
        scope: Scope::Parent {
            column: "track_id",
            table: "tracks",
        },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::json_value("track_roots", "sections", &self.sections)?;
        validate::no_nul_all("track_roots", &[("logits_ref", self.logits_ref.as_deref())])
    }
}
impl Syncable for TrackRoots {}

/// Waveform data of a track (one row per track). The small preview syncs with the record; the
/// full-resolution data is local here and travels by file sync under `full_ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackWaveform {
    /// The track.
    pub track_id: TrackId,
    /// Preview samples.
    #[serde(with = "crate::hexbytes")]
    pub preview_samples: Vec<u8>,
    /// Preview colours.
    #[serde(with = "crate::hexbytes::option")]
    pub preview_colors: Option<Vec<u8>>,
    /// Preview frequency bands.
    #[serde(with = "crate::hexbytes::option")]
    pub preview_bands: Option<Vec<u8>>,
    /// Full-resolution samples (local; synced as a blob).
    #[serde(with = "crate::hexbytes::option")]
    pub full_samples: Option<Vec<u8>>,
    /// Full-resolution colours (local; synced as a blob).
    #[serde(with = "crate::hexbytes::option")]
    pub full_colors: Option<Vec<u8>>,
    /// Full-resolution bands (local; synced as a blob).
    #[serde(with = "crate::hexbytes::option")]
    pub full_bands: Option<Vec<u8>>,
    /// Storage reference of the full-resolution blob.
    pub full_ref: Option<String>,
    /// Sample rate of the analysis (> 0).
    pub sample_rate: i64,
    /// Decoded duration in seconds.
    pub decoded_duration: f64,
}

impl Record for TrackWaveform {
    const SPEC: TableSpec = TableSpec {
        name: "track_waveforms",
        columns: &[
            Column::uuid("track_id"),
            Column::blob("preview_samples"),
            Column::blob("preview_colors"),
            Column::blob("preview_bands"),
            Column::blob("full_samples").local(),
            Column::blob("full_colors").local(),
            Column::blob("full_bands").local(),
            Column::text("full_ref"),
            Column::integer("sample_rate"),
            Column::real("decoded_duration"),
        ],
        key: &["track_id"],
        parents: &[Parent::new("track_id", "tracks")],
        scope: Scope::Parent {
            column: "track_id",
            table: "tracks",
        },
    };

    fn validate(&self) -> Result<(), ValidationError> {
        const T: &str = "track_waveforms";
        validate::no_nul_all(T, &[("full_ref", self.full_ref.as_deref())])?;
        validate::int_range(T, "sample_rate", self.sample_rate, 1, 1_000_000)?;
        validate::real_range(T, "decoded_duration", self.decoded_duration, 0.0, f64::MAX)
    }
}
impl Syncable for TrackWaveform {}

/// A stem separation output of a track: local only (stem files never leave the device).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackStem {
    /// The track.
    pub track_id: TrackId,
    /// Stem name (`vocals`, `drums`, ...), unique per track.
    pub stem_name: String,
    /// Path of the stem file on this device.
    pub file_path: String,
}

impl Record for TrackStem {
    const SPEC: TableSpec = TableSpec {
        name: "track_stems",
        columns: &[
            Column::uuid("track_id"),
            Column::text("stem_name"),
            Column::text("file_path").local(),
        ],
        key: &["track_id", "stem_name"],
        parents: &[Parent::new("track_id", "tracks")],
        scope: Scope::LocalOnly,
    };

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("track_stems", "stem_name", &self.stem_name)?;
        validate::no_nul_all(
            "track_stems",
            &[
                ("stem_name", Some(&self.stem_name)),
                ("file_path", Some(&self.file_path)),
            ],
        )?;
        if self.file_path.is_empty() {
            return Err(ValidationError::Empty {
                table: "track_stems",
                field: "file_path",
            });
        }
        Ok(())
    }
}
