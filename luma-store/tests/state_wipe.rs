//! Sign-out overwrites the session: no token bytes stay readable in `state.db` or its WAL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use luma_model::UserId;
use luma_store::{AuthSession, SecretString, StateStore};

fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(_) => false,
    }
}

#[tokio::test]
async fn sign_out_leaves_no_token_bytes_in_state_db_or_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let wal = dir.path().join("state.db-wal");
    let state = StateStore::open(&path).await.unwrap();
    let refresh = "refresh-token-7f3a9c1e5b2d4f6a8c0e";
    let access = "access-token-1b3d5f7a9c2e4f6b8d0a";
    for i in 0..3 {
        state
            .save(&AuthSession {
                user_id: UserId::new(),
                access_token: SecretString::from(format!("{access}{i}")),
                refresh_token: SecretString::from(format!("{refresh}{i}")),
                expires_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let both = [path.clone(), wal.clone()];
    assert!(
        both.iter().any(|p| file_contains(p, refresh.as_bytes())),
        "the test must see the token on disk before sign-out"
    );
    state.clear().await.unwrap();
    for p in &both {
        assert!(
            !file_contains(p, refresh.as_bytes()),
            "refresh token still in {}",
            p.display()
        );
        assert!(
            !file_contains(p, access.as_bytes()),
            "access token still in {}",
            p.display()
        );
    }
    assert!(state.load().await.unwrap().is_none());
    // The store still works after the wipe.
    state
        .save(&AuthSession {
            user_id: UserId::new(),
            access_token: SecretString::from("a".to_string()),
            refresh_token: SecretString::from("r".to_string()),
            expires_at: Utc::now(),
        })
        .await
        .unwrap();
    assert!(state.load().await.unwrap().is_some());
}
