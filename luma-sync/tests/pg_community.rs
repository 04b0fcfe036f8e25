//! Community patterns through PostgresRemote and the engine on a real server: a published
//! pattern is found by another user's search, imported, and the copy reaches the importer's
//! second device; an unpublished one is neither found nor fetchable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pg_common;

use std::sync::Arc;
use std::time::Duration;

use common::fast_config;
use luma_model::community::{PatternFilter, PatternTab};
use luma_model::{Implementation, Pattern, UserId};
use luma_store::Store;
use luma_sync::{PostgresRemote, Remote, SearchRequest, StaticToken, SyncEngine};
use pg_common::PgHarness;

type Engine = SyncEngine<Store, PostgresRemote>;

async fn device(h: &PgHarness, user: UserId) -> Engine {
    let store = Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let token = Arc::new(h.remote.sign_in(user));
    SyncEngine::new(
        store,
        h.remote.clone(),
        Arc::new(StaticToken(token)),
        fast_config(),
    )
}

async fn settle(h: &PgHarness, engines: &[&Engine]) {
    for _ in 0..2 {
        for e in engines {
            h.admin
                .settled_watermark(Duration::from_secs(60))
                .await
                .unwrap();
            e.sync_now().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_published_pattern_is_found_imported_and_synced_to_the_importers_other_device() {
    let h = PgHarness::new().await;
    let (alice, bob) = (UserId::new(), UserId::new());
    h.admin.create_user(alice, "Alice").await.unwrap();
    h.admin.create_user(bob, "Bob").await.unwrap();
    let a = device(&h, alice).await;
    let (b1, b2) = (device(&h, bob).await, device(&h, bob).await);

    let mut public = Pattern::new("Strobe 100% (fast)");
    public.is_verified = true;
    public.description = "for drops".into();
    let private = Pattern::new("Strobe draft");
    a.local().patterns().create(&public).await.unwrap();
    a.local().patterns().create(&private).await.unwrap();
    let mut graph = Implementation::new(public.id, "main");
    graph.graph_json = serde_json::json!({"nodes": [{"id": 1}], "edges": []});
    a.local().implementations().create(&graph).await.unwrap();
    settle(&h, &[&a]).await;

    let page = b1
        .search_patterns(&SearchRequest::new(
            PatternTab::Verified,
            PatternFilter::new("strobe"),
        ))
        .await
        .unwrap();
    let ids: Vec<_> = page.results.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![public.id], "only the published pattern");
    assert_eq!(page.results[0].author_name.as_deref(), Some("Alice"));
    // A literal `%` matches only itself.
    let literal = b1
        .search_patterns(&SearchRequest::new(
            PatternTab::All,
            PatternFilter::new("100%"),
        ))
        .await
        .unwrap();
    assert_eq!(literal.results.len(), 1);
    // The unpublished pattern cannot be fetched by another user.
    let bob_token = h.remote.sign_in(bob);
    assert!(h
        .remote
        .fetch_pattern(&bob_token, private.id)
        .await
        .unwrap()
        .is_none());
    assert!(h
        .remote
        .fetch_pattern(&bob_token, public.id)
        .await
        .unwrap()
        .is_some());

    let copy = b1.import_pattern(public.id).await.unwrap();
    assert_ne!(copy.id, public.id);
    assert_eq!(copy.forked_from_id, Some(public.id));
    assert_eq!(copy.uid, Some(bob));
    settle(&h, &[&b1, &b2]).await;
    let on_b2 = b2.local().patterns().get(copy.id).await.unwrap();
    assert_eq!(on_b2.name, public.name);
    let impls = b2
        .local()
        .implementations()
        .list_by_pattern(copy.id)
        .await
        .unwrap();
    assert_eq!(impls.len(), 1);
    assert_eq!(impls[0].graph_json, graph.graph_json);
    h.drop().await;
}
