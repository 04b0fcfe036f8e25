//! A stateful Supabase Storage fake on wiremock: enough of the REST API for the conformance
//! suite, answering "exists" in the old (400 + statusCode "409") or new (409) shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const BUCKET: &str = "assets";
pub const API_KEY: &str = "test-anon-key";

/// Stored objects: key -> (bytes, content type).
pub type Objects = Arc<Mutex<HashMap<String, (Vec<u8>, String)>>>;

#[derive(Clone, Default)]
pub struct Fake {
    pub objects: Objects,
    /// Answer an existing object with 400 + body statusCode "409" (old servers).
    pub legacy_conflict: bool,
}

fn err(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "statusCode": code, "error": message, "message": message
    }))
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
            return err(401, "401", "missing apikey");
        }
        let path = req.url.path().to_string();
        let mut objects = self.objects.lock().unwrap();
        let info_prefix = format!("/storage/v1/object/info/{BUCKET}/");
        let obj_prefix = format!("/storage/v1/object/{BUCKET}/");
        match req.method.as_str() {
            "GET" if path.starts_with(&info_prefix) => {
                let key = &path[info_prefix.len()..];
                match objects.get(key) {
                    Some((b, ct)) => ResponseTemplate::new(200).set_body_json(serde_json::json!({
                        "name": key, "size": b.len(), "content_type": ct
                    })),
                    None => err(400, "404", "Object not found"),
                }
            }
            "GET" if path.starts_with(&obj_prefix) => {
                let key = &path[obj_prefix.len()..];
                match objects.get(key) {
                    Some((b, ct)) => {
                        ResponseTemplate::new(200).set_body_raw(b.clone(), ct.as_str())
                    }
                    None => err(404, "404", "Object not found"),
                }
            }
            "POST" if path.starts_with(&obj_prefix) => {
                let key = path[obj_prefix.len()..].to_string();
                let upsert =
                    req.headers.get("x-upsert").and_then(|v| v.to_str().ok()) == Some("true");
                if !upsert && objects.contains_key(&key) {
                    return if self.legacy_conflict {
                        err(400, "409", "The resource already exists")
                    } else {
                        err(409, "409", "The resource already exists")
                    };
                }
                let ct = req
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string();
                objects.insert(key.clone(), (req.body.clone(), ct));
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({ "Key": format!("{BUCKET}/{key}") }))
            }
            "DELETE" if path == format!("/storage/v1/object/{BUCKET}") => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
                let mut deleted = vec![];
                for p in body["prefixes"].as_array().cloned().unwrap_or_default() {
                    if let Some(k) = p.as_str() {
                        if objects.remove(k).is_some() {
                            deleted.push(serde_json::json!({ "name": k }));
                        }
                    }
                }
                ResponseTemplate::new(200).set_body_json(deleted)
            }
            _ => err(400, "400", "unexpected request"),
        }
    }
}

pub async fn start(legacy_conflict: bool) -> (MockServer, Fake) {
    let server = MockServer::start().await;
    let fake = Fake {
        legacy_conflict,
        ..Fake::default()
    };
    Mock::given(path_regex("^/storage/v1/.*"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}
