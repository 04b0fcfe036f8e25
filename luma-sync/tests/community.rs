//! Community patterns through `MemoryRemote` and the engine: search semantics, import, the
//! copy reaching the importer's second device, and the local tabs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use common::*;
use luma_model::{Implementation, Pattern, PatternFilter, PatternId, PatternTab, UserId};
use luma_sync::{
    AccessToken, Call, Change, ChangeOutcome, Fault, MemoryRemote, PullPage, PullRequest, Remote,
    SearchRequest, SyncError, Watermark,
};
use serde_json::json;

fn pattern(name: &str, description: &str, verified: bool) -> Pattern {
    let mut p = Pattern::new(name);
    p.description = description.into();
    p.is_verified = verified;
    p
}

async fn all_pages(
    remote: &MemoryRemote,
    token: &AccessToken,
    tab: PatternTab,
    filter: PatternFilter,
    limit: u32,
) -> Vec<PatternId> {
    let mut req = SearchRequest::new(tab, filter);
    req.limit = limit;
    let mut out = Vec::new();
    loop {
        let page = remote.search_patterns(token, &req).await.unwrap();
        assert!(page.results.len() <= limit as usize);
        out.extend(page.results.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn memory_remote_tabs_pagination_and_literal_queries() {
    let remote = MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&remote, alice).await;
    let b = device(&remote, bob).await;
    let mut alice_public = Vec::new();
    let mut alice_private = Vec::new();
    let mut bobs = Vec::new();
    for i in 0..250 {
        let name = match i % 4 {
            0 => format!("Chase {}", i % 9),
            1 => "100% _chase_ (fast), 'it''s'".to_owned(),
            2 => format!("Ström {i}"),
            _ => "Pulse".to_owned(),
        };
        let p = pattern(&name, if i % 5 == 0 { "a chase" } else { "" }, i % 3 != 0);
        if i % 2 == 0 {
            a.local().patterns().create(&p).await.unwrap();
            if p.is_verified {
                alice_public.push(p.id);
            } else {
                alice_private.push(p.id);
            }
        } else {
            b.local().patterns().create(&p).await.unwrap();
            bobs.push(p.id);
        }
    }
    // A deleted community pattern is in no tab.
    let gone = pattern("Chase gone", "", true);
    a.local().patterns().create(&gone).await.unwrap();
    a.sync_now().await.unwrap();
    a.local().patterns().delete(gone.id).await.unwrap();
    a.sync_now().await.unwrap();
    b.sync_now().await.unwrap();

    let token = remote.issue_token(bob);
    let all = all_pages(
        &remote,
        &token,
        PatternTab::All,
        PatternFilter::default(),
        9,
    )
    .await;
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no repeats");
    let expected: HashSet<_> = alice_public.iter().chain(bobs.iter()).collect();
    assert_eq!(
        unique, expected,
        "all = verified ∪ mine, nothing private of others"
    );
    let mine: HashSet<_> = all_pages(
        &remote,
        &token,
        PatternTab::Mine,
        PatternFilter::default(),
        7,
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(mine, bobs.iter().copied().collect());
    let verified = all_pages(
        &remote,
        &token,
        PatternTab::Verified,
        PatternFilter::default(),
        50,
    )
    .await;
    assert!(verified
        .iter()
        .all(|id| !alice_private.contains(id) && *id != gone.id));

    // The remote and the local tabs of Bob's device agree (same filter, same order).
    for q in [
        "", "chase", "100%", "_chase_", "(fast),", "'it''s'", "ström", "STRÖM", "%", "_", "\\",
    ] {
        let f = PatternFilter::new(q);
        let remote_all = all_pages(&remote, &token, PatternTab::All, f.clone(), 13).await;
        let local_all: Vec<PatternId> = b
            .local()
            .patterns()
            .all(bob, &f)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(remote_all, local_all, "query {q:?}");
        let local_mine: Vec<PatternId> = b
            .local()
            .patterns()
            .mine(bob, &f)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(
            all_pages(&remote, &token, PatternTab::Mine, f.clone(), 13).await,
            local_mine
        );
        let local_verified: Vec<PatternId> = b
            .local()
            .patterns()
            .verified(&f)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(
            all_pages(&remote, &token, PatternTab::Verified, f.clone(), 13).await,
            local_verified
        );
    }
    // "%" and "_" are literal: only names/descriptions containing them.
    let pct = all_pages(
        &remote,
        &token,
        PatternTab::All,
        PatternFilter::new("%"),
        200,
    )
    .await;
    let pct_names: BTreeSet<String> = b
        .local()
        .patterns()
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| pct.contains(&p.id))
        .map(|p| p.name)
        .collect();
    assert_eq!(
        pct_names,
        BTreeSet::from(["100% _chase_ (fast), 'it''s'".to_owned()])
    );
    // Name matches come before description-only matches.
    let chase = all_pages(
        &remote,
        &token,
        PatternTab::All,
        PatternFilter::new("chase"),
        200,
    )
    .await;
    let desc_only: Vec<bool> = chase
        .iter()
        .map(|id| description_only(&remote, *id))
        .collect();
    assert!(desc_only.iter().any(|d| *d) && desc_only.iter().any(|d| !*d));
    assert!(
        desc_only.windows(2).all(|w| w[0] <= w[1]),
        "name matches first"
    );
    // Errors: a malformed cursor, an over-long query.
    let mut req = SearchRequest::new(PatternTab::All, PatternFilter::default());
    req.cursor = Some("[9, \"x\"]".into());
    assert!(matches!(
        remote.search_patterns(&token, &req).await,
        Err(SyncError::Permanent { .. })
    ));
    let req = SearchRequest::new(PatternTab::All, PatternFilter::new("x".repeat(201)));
    assert!(matches!(
        remote.search_patterns(&token, &req).await,
        Err(SyncError::Permanent { .. })
    ));
}

/// True if the pattern's name does not contain "chase" (a description-only match).
fn description_only(remote: &MemoryRemote, id: PatternId) -> bool {
    let snap = remote.snapshot("patterns");
    let row = snap
        .get(&luma_model::RecordKey::from(id))
        .and_then(|(_, r)| r.clone())
        .unwrap();
    !row["name"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("chase")
}

#[tokio::test]
async fn an_imported_pattern_syncs_to_the_importers_second_device() {
    let remote = MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    remote.set_profile(alice, "Alice");
    let a = device(&remote, alice).await;
    let mut p = pattern("Rainbow chase", "colours round the room", true);
    p.category = Some("Color".into());
    a.local().patterns().create(&p).await.unwrap();
    let mut imp = Implementation::new(p.id, "main");
    imp.graph_json = json!({"nodes": [{"id": "n1", "type": "rainbow"}], "edges": []});
    a.local().implementations().create(&imp).await.unwrap();
    let secret = pattern("Rainbow secret", "", false);
    a.local().patterns().create(&secret).await.unwrap();
    a.sync_now().await.unwrap();

    let b1 = device(&remote, bob).await;
    let b2 = device(&remote, bob).await;
    // Search before any pull: the remote answers.
    let page = b1
        .search_patterns(&SearchRequest::new(
            PatternTab::Verified,
            PatternFilter::new("RAINBOW"),
        ))
        .await
        .unwrap();
    assert_eq!(page.results.len(), 1);
    let hit = &page.results[0];
    assert_eq!((hit.id, hit.author_name.as_deref()), (p.id, Some("Alice")));
    assert_eq!(hit.category.as_deref(), Some("Color"));
    assert_eq!(page.next_cursor, None);
    assert_eq!(
        b1.local().patterns().count().await.unwrap(),
        0,
        "never pulled"
    );

    // Import on device 1 without having pulled the pattern.
    let copy = b1.import_pattern(p.id).await.unwrap();
    assert_ne!(copy.id, p.id);
    assert_eq!(copy.forked_from_id, Some(p.id));
    assert_eq!(copy.uid, Some(bob));
    assert!(!copy.is_verified);
    assert_eq!(
        (copy.name.as_str(), copy.category.as_deref()),
        ("Rainbow chase", Some("Color"))
    );
    b1.sync_now().await.unwrap();
    assert_eq!(b1.pending_errors().await.unwrap().len(), 0);

    // Device 2 receives the copy and its implementation through the ordinary sync.
    b2.sync_now().await.unwrap();
    let got = b2.local().patterns().get(copy.id).await.unwrap();
    assert_eq!(got, copy);
    let impls = b2
        .local()
        .implementations()
        .list_by_pattern(copy.id)
        .await
        .unwrap();
    assert_eq!(impls.len(), 1);
    assert_ne!(impls[0].id, imp.id);
    assert_eq!(impls[0].graph_json, imp.graph_json);
    // The original is untouched and still Alice's.
    assert_eq!(
        a.local()
            .implementations()
            .list_by_pattern(p.id)
            .await
            .unwrap(),
        vec![imp.clone()]
    );

    // Offline tabs on device 2.
    let f = PatternFilter::new("rainbow");
    let mine = b2.local().patterns().mine(bob, &f).await.unwrap();
    assert_eq!(mine.iter().map(|x| x.id).collect::<Vec<_>>(), vec![copy.id]);
    let verified = b2.local().patterns().verified(&f).await.unwrap();
    assert_eq!(
        verified.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![p.id]
    );
    let all = b2.search_local(PatternTab::All, &f).await.unwrap();
    let mut want = vec![p.id, copy.id];
    want.sort();
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        want,
        "same name: by id"
    );
    assert!(all.iter().all(|x| x.id != secret.id));
    // ... and the remote agrees.
    let remote_all = b2
        .search_patterns(&SearchRequest::new(PatternTab::All, f.clone()))
        .await
        .unwrap();
    assert_eq!(
        remote_all.results.iter().map(|r| r.id).collect::<Vec<_>>(),
        want
    );
}

#[tokio::test]
async fn import_uses_the_local_copy_when_the_remote_is_down_and_refuses_unreadable_patterns() {
    let remote = MemoryRemote::new();
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = device(&remote, alice).await;
    let p = pattern("Strobe", "", true);
    a.local().patterns().create(&p).await.unwrap();
    a.local()
        .implementations()
        .create(&Implementation::new(p.id, "main"))
        .await
        .unwrap();
    let private = pattern("Private", "", false);
    a.local().patterns().create(&private).await.unwrap();
    a.sync_now().await.unwrap();

    let b = device(&remote, bob).await;
    b.sync_now().await.unwrap();
    remote.inject(Call::Fetch, Fault::FailRequest);
    let copy = b.import_pattern(p.id).await.unwrap();
    assert_eq!(copy.forked_from_id, Some(p.id));
    assert_eq!(
        b.local()
            .implementations()
            .list_by_pattern(copy.id)
            .await
            .unwrap()
            .len(),
        1
    );

    assert!(matches!(
        b.import_pattern(private.id).await,
        Err(SyncError::NotFound { .. })
    ));
    assert!(matches!(
        b.import_pattern(PatternId::new()).await,
        Err(SyncError::NotFound { .. })
    ));
    // Remote down and no local copy: the remote's error.
    remote.inject(Call::Fetch, Fault::FailRequest);
    assert!(b
        .import_pattern(PatternId::new())
        .await
        .unwrap_err()
        .is_retryable());
}

/// A remote written before search existed: only the required methods.
struct Bare(MemoryRemote);

#[async_trait]
impl Remote for Bare {
    async fn push(
        &self,
        token: &AccessToken,
        changes: &[Change],
    ) -> luma_sync::Result<Vec<ChangeOutcome>> {
        self.0.push(token, changes).await
    }
    async fn pull(
        &self,
        token: &AccessToken,
        request: &PullRequest,
    ) -> luma_sync::Result<PullPage> {
        self.0.pull(token, request).await
    }
    async fn watermark(&self, token: &AccessToken) -> luma_sync::Result<Watermark> {
        self.0.watermark(token).await
    }
}

#[tokio::test]
async fn a_remote_without_search_answers_unsupported_and_import_falls_back_to_the_local_copy() {
    let remote = MemoryRemote::new();
    let user = UserId::new();
    let bare = Bare(remote.clone());
    let token = remote.issue_token(user);
    let req = SearchRequest::new(PatternTab::All, PatternFilter::default());
    assert!(matches!(
        bare.search_patterns(&token, &req).await,
        Err(SyncError::Unsupported {
            operation: "search_patterns"
        })
    ));
    assert!(matches!(
        bare.fetch_pattern(&token, PatternId::new()).await,
        Err(SyncError::Unsupported {
            operation: "fetch_pattern"
        })
    ));
    // Through Arc the real implementation is used, not the default.
    let shared = std::sync::Arc::new(remote.clone());
    assert!(shared.search_patterns(&token, &req).await.is_ok());

    let store = luma_store::Store::open_in_memory().await.unwrap();
    store.set_current_user(Some(user)).await.unwrap();
    let p = pattern("Mine", "", false);
    store.patterns().create(&p).await.unwrap();
    let engine = luma_sync::SyncEngine::new(
        store,
        bare,
        std::sync::Arc::new(luma_sync::StaticToken(std::sync::Arc::new(token))),
        fast_config(),
    );
    let copy = engine.import_pattern(p.id).await.unwrap();
    assert_eq!(copy.forked_from_id, Some(p.id));
}
