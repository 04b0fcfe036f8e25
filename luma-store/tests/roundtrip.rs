//! Every record type round-trips through the store under proptest, and bad input gives typed
//! errors without writing anything.

use luma_model::*;
use luma_store::{Store, StoreError};
use proptest::prelude::*;
use serde_json::json;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn text() -> impl Strategy<Value = String> {
    // Names: non-empty after trimming, any Unicode including quotes and JSON-ish text.
    "[a-zA-Z0-9 '\"{}%_\\\\é漢🎛]{0,30}".prop_map(|s| format!("n{s}"))
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~é]{0,20}")
}

fn unit() -> impl Strategy<Value = f64> {
    -1.0f64..=1.0
}

fn coord() -> impl Strategy<Value = f64> {
    -1.0e6f64..1.0e6
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"speed": 1.5, "colors": ["red", "blue"], "nested": {"a": null}})),
        "[a-z\"\\\\]{0,8}".prop_map(|s| json!({ "s": s })),
        any::<i32>().prop_map(|i| json!({ "i": i })),
    ]
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

struct World {
    venue: Venue,
    track: Track,
    pattern: Pattern,
    score: Score,
    fixture: Fixture,
    group: FixtureGroup,
}

async fn world(store: &Store) -> World {
    let venue = Venue::new("V");
    let track = Track::new("T");
    let pattern = Pattern::new("P");
    let score = Score::new(track.id, venue.id, "S");
    let fixture = Fixture::new(venue.id, 1, 1, 1);
    let group = FixtureGroup::new(venue.id, "G");
    store.venues().create(&venue).await.unwrap();
    store.tracks().create(&track).await.unwrap();
    store.patterns().create(&pattern).await.unwrap();
    store.scores().create(&score).await.unwrap();
    store.fixtures().create(&fixture).await.unwrap();
    store.fixture_groups().create(&group).await.unwrap();
    World {
        venue,
        track,
        pattern,
        score,
        fixture,
        group,
    }
}

/// Creates the record, reads it back, updates it to `changed`, reads it back, deletes it.
async fn cycle<T: Record + PartialEq + std::fmt::Debug + Clone>(
    store: &Store,
    record: T,
    changed: T,
) -> Result<(), TestCaseError> {
    let repo = store.repo::<T>();
    let key = record.key().unwrap();
    repo.create(&record).await.unwrap();
    let got = repo.get(key.clone()).await.unwrap();
    prop_assert_eq!(strip_times(&got), strip_times(&record));
    repo.update(&changed).await.unwrap();
    let got = repo.get(key.clone()).await.unwrap();
    prop_assert_eq!(strip_times(&got), strip_times(&changed));
    prop_assert!(repo.delete(key.clone()).await.unwrap());
    prop_assert!(repo.find(key).await.unwrap().is_none());
    Ok(())
}

/// `updated_at` is set by the store on update; compare everything else exactly.
fn strip_times<T: Record>(r: &T) -> Row {
    let mut row = r.to_row().unwrap();
    row.remove("updated_at");
    row
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn venues_round_trip(name in text(), desc in text(), code in prop::option::of("[A-Z0-9]{8}"), name2 in text()) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let mut v = Venue::new(name);
            v.description = desc;
            v.share_code = code;
            let mut v2 = v.clone();
            v2.name = name2;
            v2.share_code = None;
            cycle(&store, v, v2).await
        })?;
    }

    #[test]
    fn fixtures_round_trip(
        universe in 1i64..=63_999, address in 1i64..=512, label in opt_text(), path in opt_text(),
        pos in (coord(), coord(), coord()), rot in (coord(), coord(), coord()), maker in text(),
    ) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let w = world(&store).await;
            let mut f = Fixture::new(w.venue.id, universe, address, 1);
            f.num_channels = 513 - address;
            f.label = label;
            f.fixture_path = path;
            (f.pos_x, f.pos_y, f.pos_z) = pos;
            (f.rot_x, f.rot_y, f.rot_z) = rot;
            f.manufacturer = maker;
            let mut f2 = f.clone();
            f2.address = 1;
            f2.label = None;
            cycle(&store, f, f2).await
        })?;
    }

    #[test]
    fn groups_and_members_round_trip(
        name in text(), axes in (prop::option::of(unit()), prop::option::of(unit()), prop::option::of(unit())),
        tags in prop::collection::vec("[a-z\"]{0,6}", 0..4), config in prop::option::of(json_value()), order in any::<i32>(),
    ) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let w = world(&store).await;
            let mut g = FixtureGroup::new(w.venue.id, name);
            (g.axis_lr, g.axis_fb, g.axis_ab) = axes;
            g.tags = tags;
            g.movement_config = config;
            g.display_order = order.into();
            let mut g2 = g.clone();
            g2.tags.push("more".into());
            g2.movement_config = None;
            cycle(&store, g, g2).await?;
            let m = FixtureGroupMember { fixture_id: w.fixture.id, group_id: w.group.id, display_order: order.into() };
            let m2 = FixtureGroupMember { display_order: 7, ..m.clone() };
            cycle(&store, m, m2).await
        })?;
    }

    #[test]
    fn patterns_and_implementations_round_trip(
        name in text(), desc in text(), cat in opt_text(), verified in any::<bool>(),
        author in opt_text(), graph in json_value(),
    ) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let w = world(&store).await;
            let mut p = Pattern::new(name);
            p.description = desc;
            p.category = cat;
            p.is_verified = verified;
            p.author_name = author;
            p.forked_from_id = Some(PatternId::new());
            p.uid = Some(UserId::new());
            let mut p2 = p.clone();
            p2.is_verified = !verified;
            cycle(&store, p, p2).await?;
            let mut i = Implementation::new(w.pattern.id, "main");
            i.graph_json = graph;
            let mut i2 = i.clone();
            i2.graph_json = empty_graph();
            cycle(&store, i, i2).await
        })?;
    }

    #[test]
    fn tracks_and_analysis_round_trip(
        title in text(), artist in opt_text(), num in prop::option::of(0i64..100), bpm in prop::option::of(40.0f64..300.0),
        hash in prop::option::of("[0-9a-f]{64}"), beats in prop::collection::vec(0.0f64..1000.0, 0..20),
        preview in blob(), full in prop::option::of(blob()), sections in json_value(),
    ) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let w = world(&store).await;
            let mut t = Track::new(title);
            t.artist = artist;
            t.track_number = num;
            t.bpm = bpm;
            t.track_hash = hash;
            t.file_path = Some("/music/a.flac".into());
            t.duration_seconds = Some(200.5);
            let mut t2 = t.clone();
            t2.album = Some("Album".into());
            cycle(&store, t, t2).await?;

            let mut sorted = beats.clone();
            sorted.sort_by(f64::total_cmp);
            let b = TrackBeats { track_id: w.track.id, beats: sorted.clone(), downbeats: sorted.iter().step_by(4).copied().collect(), bpm, downbeat_offset: 0.5, beats_per_bar: 4 };
            let b2 = TrackBeats { beats_per_bar: 3, ..b.clone() };
            cycle(&store, b, b2).await?;

            let r = TrackRoots { track_id: w.track.id, sections, logits_ref: None };
            let r2 = TrackRoots { logits_ref: Some("sha256:ab".into()), ..r.clone() };
            cycle(&store, r, r2).await?;

            let wf = TrackWaveform { track_id: w.track.id, preview_samples: preview.clone(), preview_colors: full.clone(), preview_bands: None, full_samples: full, full_colors: None, full_bands: Some(vec![]), full_ref: None, sample_rate: 44_100, decoded_duration: 10.0 };
            let wf2 = TrackWaveform { preview_samples: vec![1, 2, 3], ..wf.clone() };
            cycle(&store, wf, wf2).await?;

            let s = TrackStem { track_id: w.track.id, stem_name: "drums".into(), file_path: "/stems/d.wav".into() };
            let s2 = TrackStem { file_path: "/stems/d2.wav".into(), ..s.clone() };
            cycle(&store, s, s2).await
        })?;
    }

    #[test]
    fn scores_and_placements_round_trip(
        name in text(), start in 0.0f64..1000.0, len in 0.0f64..100.0, z in any::<i32>(),
        mode in prop::sample::select(BlendMode::ALL.to_vec()), args in json_value(),
    ) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let w = world(&store).await;
            let s = Score::new(w.track.id, w.venue.id, name);
            let mut s2 = s.clone();
            s2.name = "renamed".into();
            cycle(&store, s, s2).await?;
            let mut p = TrackScore::new(w.score.id, w.pattern.id, start, start + len);
            p.z_index = z.into();
            p.blend_mode = mode;
            p.args = args;
            let mut p2 = p.clone();
            p2.blend_mode = BlendMode::Add;
            cycle(&store, p, p2).await
        })?;
    }
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let store = Store::open_in_memory().await.unwrap();
    let w = world(&store).await;
    let ops_before = store.outbox().all().await.unwrap();

    let cases: Vec<(&str, StoreError)> = vec![
        (
            "address 0",
            store
                .fixtures()
                .create(&Fixture::new(w.venue.id, 1, 0, 1))
                .await
                .unwrap_err(),
        ),
        (
            "universe 0",
            store
                .fixtures()
                .create(&Fixture::new(w.venue.id, 0, 1, 1))
                .await
                .unwrap_err(),
        ),
        (
            "footprint",
            store
                .fixtures()
                .create(&Fixture::new(w.venue.id, 1, 510, 4))
                .await
                .unwrap_err(),
        ),
        (
            "nan",
            store
                .fixtures()
                .create(&Fixture {
                    pos_x: f64::NAN,
                    ..Fixture::new(w.venue.id, 1, 1, 1)
                })
                .await
                .unwrap_err(),
        ),
        (
            "axis",
            store
                .fixture_groups()
                .create(&FixtureGroup {
                    axis_lr: Some(1.5),
                    ..FixtureGroup::new(w.venue.id, "x")
                })
                .await
                .unwrap_err(),
        ),
        (
            "empty group",
            store
                .fixture_groups()
                .create(&FixtureGroup::new(w.venue.id, ""))
                .await
                .unwrap_err(),
        ),
        (
            "empty pattern",
            store
                .patterns()
                .create(&Pattern::new(" "))
                .await
                .unwrap_err(),
        ),
        (
            "end before start",
            store
                .track_scores()
                .create(&TrackScore::new(w.score.id, w.pattern.id, 3.0, 2.0))
                .await
                .unwrap_err(),
        ),
        (
            "args not object",
            store
                .track_scores()
                .create(&TrackScore {
                    args: json!([1]),
                    ..TrackScore::new(w.score.id, w.pattern.id, 0.0, 1.0)
                })
                .await
                .unwrap_err(),
        ),
        (
            "share code",
            store
                .venues()
                .create(&Venue {
                    share_code: Some("abc".into()),
                    ..Venue::new("x")
                })
                .await
                .unwrap_err(),
        ),
        (
            "hash",
            store
                .tracks()
                .create(&Track {
                    track_hash: Some("XYZ".into()),
                    ..Track::new("x")
                })
                .await
                .unwrap_err(),
        ),
    ];
    for (what, err) in cases {
        assert!(matches!(err, StoreError::Invalid { .. }), "{what}: {err:?}");
    }
    // A failed update leaves the stored record and the outbox unchanged.
    let mut f = w.fixture.clone();
    f.address = 999;
    assert!(matches!(
        store.fixtures().update(&f).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(store.fixtures().get(w.fixture.id).await.unwrap().address, 1);
    assert_eq!(store.outbox().all().await.unwrap(), ops_before);
    // Updating a record that does not exist is NotFound, and writes nothing.
    let ghost = Fixture::new(w.venue.id, 1, 1, 1);
    assert!(store
        .fixtures()
        .update(&ghost)
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(store.outbox().all().await.unwrap(), ops_before);
}

#[test]
fn a_bad_uuid_string_is_a_typed_error() {
    let err = "not-a-uuid".parse::<VenueId>().unwrap_err();
    assert_eq!(err.kind, "venue id");
    assert!(err.to_string().contains("not-a-uuid"));
}

#[tokio::test]
async fn unknown_enum_text_in_the_database_is_a_typed_error() {
    let store = Store::open_in_memory().await.unwrap();
    let w = world(&store).await;
    let p = TrackScore::new(w.score.id, w.pattern.id, 0.0, 1.0);
    store.track_scores().create(&p).await.unwrap();
    sqlx::query("UPDATE track_scores SET blend_mode = 'sparkle'")
        .execute(store.writer_pool())
        .await
        .unwrap();
    let err = store.track_scores().get(p.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Row { .. }), "{err:?}");
    assert!(err.to_string().contains("track_scores"), "{err}");
    // A bad id in the database is a typed error too.
    sqlx::query("UPDATE venues SET uid = 'garbage'")
        .execute(store.writer_pool())
        .await
        .unwrap();
    // A list leaves the row out (and reports it) rather than failing whole.
    assert!(store.venues().list().await.unwrap().is_empty());
    let report = store.venues().list_report().await.unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        report.skipped[0].key,
        luma_model::RecordKey::from(w.venue.id)
    );
    assert!(matches!(
        store.venues().get(w.venue.id).await,
        Err(StoreError::Row { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// The bulk path hands rows to SQLite as JSON: values must still be exact.
    #[test]
    fn bulk_import_keeps_values_exact(values in prop::collection::vec((any::<f64>().prop_filter("finite", |f| f.is_finite()), text(), prop::option::of("[ -~]{0,10}")), 1..40)) {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let w = world(&store).await;
            let fixtures: Vec<Fixture> = values.iter().map(|(f, s, p)| Fixture {
                pos_x: *f, rot_z: -*f, manufacturer: s.clone(), fixture_path: p.clone(),
                ..Fixture::new(w.venue.id, 1, 1, 1)
            }).collect();
            prop_assert_eq!(store.import_fixtures(w.venue.id, &fixtures).await.unwrap(), fixtures.len());
            for f in &fixtures {
                prop_assert_eq!(&store.fixtures().get(f.id).await.unwrap(), f);
            }
            Ok(())
        })?;
    }
}
