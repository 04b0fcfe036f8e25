//! Quickstart: open a `luma.db`, store a small show, and look at what the sync engine would
//! push.
//!
//! ```sh
//! cargo run --example quickstart            # in a temporary directory, removed at exit
//! cargo run --example quickstart -- ./show  # creates or reuses ./show/luma.db
//! ```
//!
//! It creates a venue with a few fixtures and a group, a pattern with an implementation, a
//! track with its beat grid and a score placing the pattern twice on the track's timeline,
//! then prints what it stored and the pending ops: one per record, each written in the same
//! SQLite transaction as the record itself.
#![allow(
    clippy::print_stdout,
    reason = "an example program: printing is its output"
)]

use std::error::Error;
use std::path::PathBuf;

use luma::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Log lines of the library as RUST_LOG asks (for example RUST_LOG=luma_sync=debug).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    // Where luma.db lives: the first argument, or a temporary directory kept until the end.
    let temp;
    let dir: PathBuf = match std::env::args_os().nth(1) {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            PathBuf::from(dir)
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let path = dir.join("luma.db");
    let store = Store::open(&path).await?;
    println!("opened {} (site {})", path.display(), store.site_id());

    // A venue and its patched fixtures: two spots by single writes, four washes in one bulk
    // import (one transaction).
    let venue = Venue::new("Main stage");
    store.venues().create(&venue).await?;

    let mut spots = Vec::new();
    for (i, side) in ["left", "right"].into_iter().enumerate() {
        let mut spot = Fixture::new(venue.id, 1, 1 + 16 * i as i64, 16);
        spot.manufacturer = "Robe".into();
        spot.model = "MegaPointe".into();
        spot.mode_name = "Mode 1".into();
        spot.label = Some(format!("Spot {side}"));
        spot.pos_x = if i == 0 { -3.0 } else { 3.0 };
        spot.pos_z = 6.0;
        store.fixtures().create(&spot).await?;
        spots.push(spot);
    }
    let washes: Vec<Fixture> = (0..4)
        .map(|i| {
            let mut wash = Fixture::new(venue.id, 2, 1 + 8 * i, 8);
            wash.manufacturer = "Chauvet".into();
            wash.model = "Rogue R2 Wash".into();
            wash.label = Some(format!("Wash {}", i + 1));
            wash.pos_x = -3.0 + 2.0 * i as f64;
            wash.pos_z = 5.0;
            wash
        })
        .collect();
    store.import_fixtures(venue.id, &washes).await?;

    // A group holding the washes.
    let mut front = FixtureGroup::new(venue.id, "front_wash");
    front.axis_fb = Some(1.0);
    front.tags = vec!["wash".into(), "front".into()];
    store.fixture_groups().create(&front).await?;
    let members: Vec<FixtureGroupMember> = washes
        .iter()
        .zip(0..)
        .map(|(wash, order)| FixtureGroupMember {
            fixture_id: wash.id,
            group_id: front.id,
            display_order: order,
        })
        .collect();
    store.group_members().create_many(&members).await?;

    // A pattern with one implementation (its node graph).
    let mut pattern = Pattern::new("Rainbow chase");
    pattern.category = Some("Color".into());
    store.patterns().create(&pattern).await?;
    let mut implementation = Implementation::new(pattern.id, "default");
    implementation.graph_json = serde_json::json!({
        "nodes": [{"id": "hue", "type": "hue_cycle", "speed": 0.5}, {"id": "out", "type": "output"}],
        "edges": [{"from": "hue", "to": "out"}],
    });
    store.implementations().create(&implementation).await?;

    // A track and its beat grid (120 BPM, 4/4, 8 bars).
    let mut track = Track::new("Opening number");
    track.artist = Some("The House Band".into());
    track.duration_seconds = Some(16.0);
    track.bpm = Some(120.0);
    store.tracks().create(&track).await?;
    let beats: Vec<f64> = (0..32).map(|b| f64::from(b) * 0.5).collect();
    let downbeats: Vec<f64> = beats.iter().copied().step_by(4).collect();
    store
        .track_beats()
        .create(&TrackBeats {
            track_id: track.id,
            beats,
            downbeats,
            bpm: Some(120.0),
            downbeat_offset: 0.0,
            beats_per_bar: 4,
        })
        .await?;

    // A score of the track for the venue, placing the pattern twice.
    let score = Score::new(track.id, venue.id, "Opening, main stage");
    store.scores().create(&score).await?;
    let intro = TrackScore::new(score.id, pattern.id, 0.0, 8.0);
    let mut chorus = TrackScore::new(score.id, pattern.id, 8.0, 16.0);
    chorus.z_index = 1;
    chorus.blend_mode = BlendMode::Add;
    chorus.args = serde_json::json!({"speed": 2.0});
    store
        .replace_track_scores(score.id, &[intro, chorus])
        .await?;

    // A device setting (local only: it never produces a pending op).
    store.settings().set("last_venue", &venue.id).await?;

    // Edits of a record collapse into its one pending op, with the newest stamp.
    let mut spot_left = spots[0].clone();
    spot_left.rot_z = 45.0;
    store.fixtures().update(&spot_left).await?;

    // What is stored.
    println!();
    println!("venues:");
    for v in store.venues().list().await? {
        println!("  {} ({})", v.name, v.id);
        let mut fixtures = store.fixtures().list_by_venue(v.id).await?;
        fixtures.sort_by_key(|f| (f.universe, f.address));
        for f in fixtures {
            println!(
                "    fixture {:<10} {} {} at {}/{:03} ({} ch)",
                f.label.as_deref().unwrap_or("-"),
                f.manufacturer,
                f.model,
                f.universe,
                f.address,
                f.num_channels
            );
        }
        for g in store.fixture_groups().list_by_venue(v.id).await? {
            let n = store.group_members().list_by_group(g.id).await?.len();
            println!("    group {} with {n} members", g.name);
        }
    }
    println!("patterns:");
    for p in store.patterns().list().await? {
        let n = store.implementations().list_by_pattern(p.id).await?.len();
        println!(
            "  {} [{}] with {n} implementation(s)",
            p.name,
            p.category.as_deref().unwrap_or("-")
        );
    }
    println!("tracks:");
    for t in store.tracks().list().await? {
        let beats = store
            .track_beats()
            .find(t.id)
            .await?
            .map_or(0, |b| b.beats.len());
        println!(
            "  {} by {} ({} beats)",
            t.title,
            t.artist.as_deref().unwrap_or("?"),
            beats
        );
    }
    println!("scores:");
    for s in store.scores().list().await? {
        println!("  {}", s.name);
        for p in store.track_scores().list_by_score(s.id).await? {
            println!(
                "    {:>5.1}s-{:>5.1}s layer {} {}",
                p.start_time, p.end_time, p.z_index, p.blend_mode
            );
        }
    }
    println!("settings:");
    for s in store.settings().all().await? {
        println!("  {} = {}", s.key, s.value);
    }
    println!(
        "counts: {} venues, {} fixtures, {} groups, {} members, {} patterns, {} implementations, \
         {} tracks, {} beat grids, {} scores, {} placements",
        store.venues().count().await?,
        store.fixtures().count().await?,
        store.fixture_groups().count().await?,
        store.group_members().count().await?,
        store.patterns().count().await?,
        store.implementations().count().await?,
        store.tracks().count().await?,
        store.track_beats().count().await?,
        store.scores().count().await?,
        store.track_scores().count().await?,
    );

    // What the sync engine would push, oldest first.
    let ops = store.outbox().all().await?;
    println!();
    println!("pending ops ({}):", ops.len());
    println!(
        "  {:<4} {:<22} {:<7} {:<40} hlc",
        "id", "table", "kind", "key"
    );
    for op in &ops {
        println!(
            "  {:<4} {:<22} {:<7} {:<40} {}",
            op.id.0,
            op.table,
            op.kind.as_str(),
            op.key.as_str(),
            op.hlc
        );
    }

    store.close().await;
    Ok(())
}
