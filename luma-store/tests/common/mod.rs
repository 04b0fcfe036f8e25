//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use luma_model::{Fixture, FixtureGroup, FixtureGroupMember, Venue};
use luma_store::Store;

pub async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("luma.db")).await.unwrap();
    (dir, store)
}

pub async fn venue_with_fixtures(store: &Store, n: usize) -> (Venue, Vec<Fixture>, FixtureGroup) {
    let venue = Venue::new("Hall");
    store.venues().create(&venue).await.unwrap();
    let fixtures: Vec<Fixture> = (0..n)
        .map(|i| Fixture::new(venue.id, 1, 1 + (i as i64 % 500), 1))
        .collect();
    store.import_fixtures(venue.id, &fixtures).await.unwrap();
    let group = FixtureGroup::new(venue.id, "front");
    store.fixture_groups().create(&group).await.unwrap();
    for f in &fixtures {
        store
            .group_members()
            .create(&FixtureGroupMember {
                fixture_id: f.id,
                group_id: group.id,
                display_order: 0,
            })
            .await
            .unwrap();
    }
    (venue, fixtures, group)
}
