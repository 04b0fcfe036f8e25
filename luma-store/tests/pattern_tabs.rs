//! The local pattern tabs (verified / mine / all) with the search filter and order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use luma_model::{Pattern, PatternFilter, PatternId, PatternTab, UserId};
use luma_store::Store;

fn pattern(owner: UserId, name: &str, description: &str, verified: bool) -> Pattern {
    let mut p = Pattern::new(name);
    p.uid = Some(owner);
    p.description = description.into();
    p.is_verified = verified;
    p
}

fn ids(ps: &[Pattern]) -> Vec<PatternId> {
    ps.iter().map(|p| p.id).collect()
}

#[tokio::test]
async fn tabs_filter_rank_and_order_like_the_remote_search() {
    let store = Store::open_in_memory().await.unwrap();
    let (me, other) = (UserId::new(), UserId::new());
    store.set_current_user(Some(me)).await.unwrap();
    let theirs_public = pattern(other, "b Wave", "", true);
    let theirs_private = pattern(other, "A wave (private)", "", false);
    let mine_public = pattern(me, "a WAVE 100%", "", true);
    let mine_private = pattern(me, "Strobe", "like a wave", false);
    let mut categorised = pattern(me, "Wave_colour", "", false);
    categorised.category = Some("Color".into());
    for p in [
        &theirs_public,
        &theirs_private,
        &mine_public,
        &mine_private,
        &categorised,
    ] {
        store.patterns().upsert(p).await.unwrap();
    }
    let repo = store.patterns();
    let all = PatternFilter::default();
    assert_eq!(
        ids(&repo.verified(&all).await.unwrap()),
        vec![mine_public.id, theirs_public.id]
    );
    assert_eq!(
        ids(&repo.mine(me, &all).await.unwrap()),
        vec![mine_public.id, mine_private.id, categorised.id]
    );
    assert_eq!(
        ids(&repo.all(me, &all).await.unwrap()),
        vec![
            mine_public.id,
            theirs_public.id,
            mine_private.id,
            categorised.id
        ]
    );
    // Name matches (by lowercased name) before the description-only match.
    let wave = PatternFilter::new("wave");
    assert_eq!(
        ids(&repo.all(me, &wave).await.unwrap()),
        vec![
            mine_public.id,
            theirs_public.id,
            categorised.id,
            mine_private.id
        ]
    );
    // Literal text and the category filter.
    assert_eq!(
        ids(&repo.all(me, &PatternFilter::new("100%")).await.unwrap()),
        vec![mine_public.id]
    );
    assert_eq!(
        ids(&repo.all(me, &PatternFilter::new("e_c")).await.unwrap()),
        vec![categorised.id]
    );
    assert!(repo
        .all(me, &PatternFilter::new("%%"))
        .await
        .unwrap()
        .is_empty());
    assert!(repo
        .all(me, &PatternFilter::new("(private)"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&repo
            .all(me, &PatternFilter::new("wave").with_category("Color"))
            .await
            .unwrap()),
        vec![categorised.id]
    );
    // No user: mine is empty, all is verified.
    assert!(repo
        .search(PatternTab::Mine, None, &all)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&repo.search(PatternTab::All, None, &all).await.unwrap()),
        ids(&repo.verified(&all).await.unwrap())
    );
}
