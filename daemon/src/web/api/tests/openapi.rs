//! The OpenAPI document.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_routes() {
    let f = Fixture::new().await;
    let r = f.get("/api/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_ne!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let ops: std::collections::HashSet<(String, String)> = f
        .operations()
        .await
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    let want = [
        ("GET", "/api/state"),
        ("POST", "/api/setup"),
        ("POST", "/api/login"),
        ("POST", "/api/logout"),
        ("GET", "/api/session"),
        ("POST", "/api/password"),
        ("POST", "/api/totp/enroll"),
        ("POST", "/api/totp/reenroll"),
        ("POST", "/api/password/require"),
        ("GET", "/api/totp/qr.svg"),
        ("POST", "/api/totp/confirm"),
        ("GET", "/api/sessions"),
        ("DELETE", "/api/sessions/{id}"),
        ("GET", "/api/audit"),
        ("GET", "/api/audit/verify"),
        ("GET", "/api/audit/export"),
        ("GET", "/api/audit/types"),
        ("POST", "/api/lockdown"),
        ("GET", "/api/keys"),
        ("POST", "/api/keys/rotate"),
        ("POST", "/api/backup"),
        ("POST", "/api/erase"),
        ("GET", "/api/warnings"),
        ("POST", "/api/warnings/{id}/acknowledge"),
        ("POST", "/api/warnings/acknowledge"),
        ("GET", "/api/privacy"),
        ("GET", "/api/devices"),
        ("PATCH", "/api/devices/{id}"),
        ("DELETE", "/api/devices/{id}"),
        ("POST", "/api/devices/{id}/adopt"),
        ("POST", "/api/devices/{id}/ignore"),
        ("POST", "/api/devices/{id}/command"),
        ("POST", "/api/devices/{id}/rotate"),
        ("GET", "/api/events"),
        ("GET", "/api/integrations/homeassistant"),
        ("PATCH", "/api/integrations/homeassistant"),
        ("POST", "/api/integrations/homeassistant/enable"),
        ("POST", "/api/integrations/homeassistant/rotate"),
        ("POST", "/api/integrations/homeassistant/disable"),
        ("GET", "/api/relay"),
        ("POST", "/api/relay/enable"),
        ("POST", "/api/relay/disable"),
        ("POST", "/api/relay/clients"),
        ("DELETE", "/api/relay/clients/{id}"),
        ("DELETE", "/api/relay/links/{id}"),
        ("GET", "/api/matter"),
        ("GET", "/api/matter/qr.svg"),
        ("POST", "/api/matter/pairing"),
        ("DELETE", "/api/matter/pairing"),
        ("GET", "/api/matter/fabrics"),
        ("DELETE", "/api/matter/fabrics/{index}"),
        ("GET", "/api/dns"),
        ("GET", "/api/dns/clouds"),
        ("POST", "/api/dns/clouds"),
        ("DELETE", "/api/dns/clouds/{domain}"),
        ("GET", "/api/devices/{id}/dns"),
        ("PUT", "/api/devices/{id}/dns"),
    ];
    for (m, p) in want {
        assert!(
            ops.contains(&(m.to_owned(), p.to_owned())),
            "{m} {p} is not in the document"
        );
    }
    assert_eq!(
        ops.len(),
        want.len(),
        "the document lists routes not checked here"
    );
    // Every operation says what it answers.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
}
