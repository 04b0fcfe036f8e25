//! Contract tests of the Supabase Storage backend: the exact requests it sends and how it reads
//! every answer shape.

use bytes::Bytes;
use luma_files::{
    BlobError, BlobStore, BlobStoreExt, PutMode, PutOptions, PutOutcome, SupabaseBlobStore,
    SupabaseStorageConfig,
};
use wiremock::matchers::{
    body_bytes, body_json, header, header_exists, header_regex, method, path,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "blake3/00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const JWT_KEY: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl";

fn client(server: &MockServer, api_key: &str) -> SupabaseBlobStore {
    SupabaseBlobStore::new(SupabaseStorageConfig {
        url: format!("{}/", server.uri()),
        bucket: "assets".into(),
        api_key: api_key.to_string().into(),
    })
    .unwrap()
}

fn signed_in(server: &MockServer) -> SupabaseBlobStore {
    let s = client(server, JWT_KEY);
    s.set_access_token(Some("user-access-token".to_string().into()));
    s
}

fn object_path() -> String {
    format!("/storage/v1/object/assets/{KEY}")
}

#[tokio::test]
async fn upload_sends_post_with_headers_and_raw_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(object_path()))
        .and(header("apikey", JWT_KEY))
        .and(header("authorization", "Bearer user-access-token"))
        .and(header("x-upsert", "false"))
        .and(header("content-type", "image/jpeg"))
        .and(header_regex("x-client-info", "^luma/"))
        .and(body_bytes(b"jpeg bytes".to_vec()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"Key": "x"})))
        .expect(1)
        .mount(&server)
        .await;
    let out = signed_in(&server)
        .put_bytes(
            KEY,
            Bytes::from_static(b"jpeg bytes"),
            PutOptions::if_absent(Some("image/jpeg")),
        )
        .await
        .unwrap();
    assert_eq!(out, PutOutcome::Stored { size: 10 });
}

#[tokio::test]
async fn overwrite_sends_x_upsert_true() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(object_path()))
        .and(header("x-upsert", "true"))
        .and(header("content-type", "application/octet-stream"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let opts = PutOptions {
        mode: PutMode::Overwrite,
        ..PutOptions::default()
    };
    signed_in(&server)
        .put_bytes(KEY, Bytes::from_static(b"x"), opts)
        .await
        .unwrap();
}

#[tokio::test]
async fn both_exists_answers_mean_already_exists() {
    for (status, body) in [
        (
            409,
            serde_json::json!({"statusCode": "409", "error": "Duplicate", "message": "The resource already exists"}),
        ),
        (
            400,
            serde_json::json!({"statusCode": "409", "error": "Duplicate", "message": "The resource already exists"}),
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(object_path()))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let out = signed_in(&server)
            .put_bytes(KEY, Bytes::from_static(b"x"), PutOptions::if_absent(None))
            .await
            .unwrap();
        assert_eq!(out, PutOutcome::AlreadyExists, "HTTP {status}");
    }
}

#[tokio::test]
async fn other_400s_are_errors_not_exists() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(object_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            serde_json::json!({"statusCode": "413", "error": "Payload too large", "message": "The object exceeded the maximum allowed size"}),
        ))
        .mount(&server)
        .await;
    let err = signed_in(&server)
        .put_bytes(KEY, Bytes::from_static(b"x"), PutOptions::if_absent(None))
        .await
        .unwrap_err();
    match &err {
        BlobError::Http {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert!(message.contains("maximum allowed size"), "{message}");
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn download_is_get_and_404_in_both_shapes_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(object_path()))
        .and(header("apikey", JWT_KEY))
        .and(header("authorization", "Bearer user-access-token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"blob!".to_vec(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let s = signed_in(&server);
    let got = s.get(KEY).await.unwrap();
    assert_eq!(got.meta.content_type.as_deref(), Some("image/png"));
    assert_eq!(got.meta.size, 5);
    drop(got);
    server.reset().await;
    for (status, code) in [(404, "404"), (400, "404")] {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path(object_path()))
            .respond_with(ResponseTemplate::new(status).set_body_json(
                serde_json::json!({"statusCode": code, "error": "not_found", "message": "Object not found"}),
            ))
            .mount(&server)
            .await;
        let err = s.get(KEY).await.unwrap_err();
        assert!(err.is_not_found(), "HTTP {status}: {err:?}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn head_reads_object_info() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/storage/v1/object/info/assets/{KEY}")))
        .and(header("apikey", JWT_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "1", "name": KEY, "size": 1234, "content_type": "image/webp"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let meta = signed_in(&server).head(KEY).await.unwrap();
    assert_eq!(meta.size, 1234);
    assert_eq!(meta.content_type.as_deref(), Some("image/webp"));
}

#[tokio::test]
async fn delete_posts_prefixes_to_the_bucket() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/assets"))
        .and(header("apikey", JWT_KEY))
        .and(body_json(serde_json::json!({ "prefixes": [KEY] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .expect(1)
        .mount(&server)
        .await;
    signed_in(&server).delete(KEY).await.unwrap();
}

#[tokio::test]
async fn bearer_without_session_is_a_legacy_anon_key_never_a_new_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(object_path()))
        .and(header(
            "authorization",
            format!("Bearer {JWT_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"a".to_vec(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    client(&server, JWT_KEY).get_bytes(KEY).await.unwrap();

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(object_path()))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(object_path()))
        .and(header("apikey", "sb_publishable_abc"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"a".to_vec(), "image/png"))
        .mount(&server)
        .await;
    client(&server, "sb_publishable_abc")
        .get_bytes(KEY)
        .await
        .unwrap();
}

#[tokio::test]
async fn retryability_of_status_codes() {
    for (status, retryable) in [
        (503, true),
        (500, true),
        (429, true),
        (401, false),
        (403, false),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(object_path()))
            .respond_with(ResponseTemplate::new(status).set_body_string("nope"))
            .mount(&server)
            .await;
        let err = signed_in(&server).get(KEY).await.unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "HTTP {status}: {err}");
        assert!(!err.is_not_found());
    }
}

#[tokio::test]
async fn connection_refused_is_retryable_transport() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = SupabaseBlobStore::new(SupabaseStorageConfig {
        url: format!("http://127.0.0.1:{port}"),
        bucket: "assets".into(),
        api_key: JWT_KEY.to_string().into(),
    })
    .unwrap();
    let err = s.head(KEY).await.unwrap_err();
    assert!(matches!(err, BlobError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
}
