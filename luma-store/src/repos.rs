//! Named repositories and the table-specific queries and bulk paths an app needs.

use luma_model::{
    Category, Fixture, FixtureGroup, FixtureGroupId, FixtureGroupMember, FixtureId, Implementation,
    Pattern, PatternFilter, PatternId, PatternTab, Record, Score, ScoreId, SearchKey, Track,
    TrackBeats, TrackId, TrackRoots, TrackScore, TrackStem, TrackWaveform, UserId, ValidationError,
    Venue, VenueId,
};

use crate::error::{Result, StoreError};
use crate::repo::Repo;
use crate::store::Store;

impl Store {
    /// The repository of any registered record type (built-in or plugin).
    pub fn repo<T: Record>(&self) -> Repo<'_, T> {
        Repo::new(self)
    }
    /// Venues.
    pub fn venues(&self) -> Repo<'_, Venue> {
        self.repo()
    }
    /// Fixtures.
    pub fn fixtures(&self) -> Repo<'_, Fixture> {
        self.repo()
    }
    /// Fixture groups.
    pub fn fixture_groups(&self) -> Repo<'_, FixtureGroup> {
        self.repo()
    }
    /// Fixture group memberships.
    pub fn group_members(&self) -> Repo<'_, FixtureGroupMember> {
        self.repo()
    }
    /// Pattern categories (seeded).
    pub fn categories(&self) -> Repo<'_, Category> {
        self.repo()
    }
    /// Patterns.
    pub fn patterns(&self) -> Repo<'_, Pattern> {
        self.repo()
    }
    /// Pattern implementations.
    pub fn implementations(&self) -> Repo<'_, Implementation> {
        self.repo()
    }
    /// Tracks.
    pub fn tracks(&self) -> Repo<'_, Track> {
        self.repo()
    }
    /// Beat grids.
    pub fn track_beats(&self) -> Repo<'_, TrackBeats> {
        self.repo()
    }
    /// Chord-root analyses.
    pub fn track_roots(&self) -> Repo<'_, TrackRoots> {
        self.repo()
    }
    /// Waveforms.
    pub fn track_waveforms(&self) -> Repo<'_, TrackWaveform> {
        self.repo()
    }
    /// Stem files (local only).
    pub fn track_stems(&self) -> Repo<'_, TrackStem> {
        self.repo()
    }
    /// Scores.
    pub fn scores(&self) -> Repo<'_, Score> {
        self.repo()
    }
    /// Pattern placements.
    pub fn track_scores(&self) -> Repo<'_, TrackScore> {
        self.repo()
    }

    /// Imports a venue's fixtures in one transaction: all are validated first and must
    /// belong to `venue`; nothing is written if any is invalid.
    pub async fn import_fixtures(&self, venue: VenueId, fixtures: &[Fixture]) -> Result<usize> {
        for f in fixtures {
            belongs("fixtures", f.id, f.venue_id, venue)?;
        }
        self.fixtures().create_many(fixtures).await
    }

    /// Replaces all placements of a score in one transaction (undo / redo): the old ones are
    /// deleted, the new ones inserted. Placements kept with the same id end as one pending
    /// upsert each; removed ones as a delete.
    pub async fn replace_track_scores(
        &self,
        score: ScoreId,
        placements: &[TrackScore],
    ) -> Result<()> {
        for p in placements {
            belongs("track_scores", p.id, p.score_id, score)?;
        }
        let mut tx = self.transaction().await?;
        tx.delete_where::<TrackScore>("score_id", score).await?;
        tx.create_many(placements).await?;
        tx.commit().await
    }
}

/// Checks that a record of a bulk path belongs to the parent the call names.
fn belongs<I: std::fmt::Display, P: PartialEq + std::fmt::Display>(
    table: &'static str,
    id: I,
    actual: P,
    expected: P,
) -> Result<()> {
    if actual != expected {
        return Err(StoreError::Invalid {
            source: ValidationError::Inconsistent {
                table,
                message: format!("{table} record {id} belongs to {actual}, not {expected}"),
            },
        });
    }
    Ok(())
}

impl Repo<'_, Fixture> {
    /// The fixtures of a venue.
    pub async fn list_by_venue(&self, venue: VenueId) -> Result<Vec<Fixture>> {
        self.list_by("venue_id", venue).await
    }
}

impl Repo<'_, FixtureGroup> {
    /// The groups of a venue, in display order.
    pub async fn list_by_venue(&self, venue: VenueId) -> Result<Vec<FixtureGroup>> {
        let mut groups = self.list_by("venue_id", venue).await?;
        groups.sort_by(|a, b| {
            a.display_order
                .cmp(&b.display_order)
                .then(a.name.cmp(&b.name))
        });
        Ok(groups)
    }
}

impl Repo<'_, FixtureGroupMember> {
    /// The members of a group, in display order.
    pub async fn list_by_group(&self, group: FixtureGroupId) -> Result<Vec<FixtureGroupMember>> {
        let mut members = self.list_by("group_id", group).await?;
        members.sort_by_key(|m| m.display_order);
        Ok(members)
    }
    /// The groups a fixture belongs to.
    pub async fn list_by_fixture(&self, fixture: FixtureId) -> Result<Vec<FixtureGroupMember>> {
        self.list_by("fixture_id", fixture).await
    }
}

impl Repo<'_, Pattern> {
    /// Patterns owned by `user`.
    pub async fn list_by_owner(&self, user: UserId) -> Result<Vec<Pattern>> {
        self.list_by("uid", user).await
    }
    /// Community (verified) patterns present locally.
    pub async fn list_verified(&self) -> Result<Vec<Pattern>> {
        self.select("WHERE is_verified = 1", Vec::new()).await
    }

    /// The "verified" tab over what is synced locally: community patterns (any owner) that
    /// match `filter`, in search order (see [`luma_model::community`]).
    pub async fn verified(&self, filter: &PatternFilter) -> Result<Vec<Pattern>> {
        self.search(PatternTab::Verified, None, filter).await
    }

    /// The "mine" tab over what is synced locally: `user`'s patterns, verified or not.
    pub async fn mine(&self, user: UserId, filter: &PatternFilter) -> Result<Vec<Pattern>> {
        self.search(PatternTab::Mine, Some(user), filter).await
    }

    /// The "all" tab over what is synced locally: community patterns and `user`'s own.
    pub async fn all(&self, user: UserId, filter: &PatternFilter) -> Result<Vec<Pattern>> {
        self.search(PatternTab::All, Some(user), filter).await
    }

    /// One tab over the local patterns, with the text filter, ranking and order of the remote
    /// search (`luma_search_patterns`): name matches first, then description-only matches,
    /// each by lowercased name then id. Without a user, "mine" is empty and "all" is
    /// "verified".
    pub async fn search(
        &self,
        tab: PatternTab,
        user: Option<UserId>,
        filter: &PatternFilter,
    ) -> Result<Vec<Pattern>> {
        let me = user.map(|u| u.to_string());
        let candidates = match (tab, &me) {
            (PatternTab::Mine, None) => Vec::new(),
            (PatternTab::Mine, Some(me)) => self.select("WHERE uid = ?", vec![me.clone()]).await?,
            (PatternTab::All, Some(me)) => {
                self.select("WHERE is_verified = 1 OR uid = ?", vec![me.clone()])
                    .await?
            }
            (PatternTab::Verified, _) | (PatternTab::All, None) => {
                self.select("WHERE is_verified = 1", Vec::new()).await?
            }
        };
        let mut hits: Vec<(SearchKey, Pattern)> = candidates
            .into_iter()
            .filter_map(|p| {
                let rank = filter.rank(&p.name, &p.description, p.category.as_deref())?;
                Some((SearchKey::new(rank, &p.name, p.id), p))
            })
            .collect();
        hits.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(hits.into_iter().map(|(_, p)| p).collect())
    }
}

impl Repo<'_, Implementation> {
    /// The implementations of a pattern.
    pub async fn list_by_pattern(&self, pattern: PatternId) -> Result<Vec<Implementation>> {
        self.list_by("pattern_id", pattern).await
    }
}

impl Repo<'_, Score> {
    /// The scores of a track.
    pub async fn list_by_track(&self, track: TrackId) -> Result<Vec<Score>> {
        self.list_by("track_id", track).await
    }
    /// The scores of a venue.
    pub async fn list_by_venue(&self, venue: VenueId) -> Result<Vec<Score>> {
        self.list_by("venue_id", venue).await
    }
}

impl Repo<'_, TrackScore> {
    /// The placements of a score, by start time then layer.
    pub async fn list_by_score(&self, score: ScoreId) -> Result<Vec<TrackScore>> {
        let mut placements = self.list_by("score_id", score).await?;
        placements.sort_by(|a, b| {
            a.start_time
                .total_cmp(&b.start_time)
                .then(a.z_index.cmp(&b.z_index))
        });
        Ok(placements)
    }
}

impl Repo<'_, TrackStem> {
    /// The stems of a track.
    pub async fn list_by_track(&self, track: TrackId) -> Result<Vec<TrackStem>> {
        self.list_by("track_id", track).await
    }
}

impl Repo<'_, Track> {
    /// Tracks with this audio hash (several rows may share one).
    pub async fn list_by_hash(&self, hash: &str) -> Result<Vec<Track>> {
        self.list_by("track_hash", hash).await
    }
}
