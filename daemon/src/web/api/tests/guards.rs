//! The guards every route shares: session, CSRF token, origin, body
//! limits and shapes, and the security headers.

use super::*;

// ---- the guards on every route -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_route_needs_a_session() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let own_id = session_id(&f, &owner).await;
    let (pending, adopted) = (f.add_pending(), f.add_adopted());
    let before = f.snapshot();

    let ops = f.operations().await;
    let guarded: Vec<_> = ops.iter().filter(|(m, p)| !public(m, p)).collect();
    assert!(guarded.len() >= 23, "only {} guarded operations", guarded.len());
    assert!(
        guarded.iter().filter(|(m, _)| *m != Method::GET).count() >= 15,
        "state-changing routes missing from the document"
    );
    for (method, path) in guarded {
        let uri = concrete(path, &pending, &adopted, &own_id);
        let body = body_for(method, path);
        // No cookie; a made-up token; the real token under another name;
        // the CSRF token alone.
        let cookies = [
            None,
            Some(format!("{COOKIE}=00000000000000000000000000000000")),
            Some(format!("hearth={}", owner.token)),
            Some(format!("{COOKIE}={}", owner.csrf)),
        ];
        for cookie in cookies {
            let mut b = Fixture::request(method.clone(), &uri).header("x-csrf-token", &owner.csrf);
            if let Some(c) = &cookie {
                b = b.header(header::COOKIE, c);
            }
            let req = match &body {
                Some(v) => b
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(v.to_string())),
                None => b.body(Body::empty()),
            };
            let r = f.send(req.unwrap()).await;
            assert_json_error(&r, StatusCode::UNAUTHORIZED, "not logged in");
            assert!(r.set_cookie().is_none());
        }
    }
    assert_eq!(
        f.snapshot(),
        before,
        "an unauthenticated request changed something"
    );
    assert!(f.alive(&owner).await);
    // No enrolment was started either.
    let r = f.get("/api/totp/qr.svg", Some(&owner)).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "start enrolment first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_route_needs_the_csrf_token_and_same_origin() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let b_id = session_id(&f, &b).await;
    assert_ne!(a.csrf, b.csrf);
    let (pending, adopted) = (f.add_pending(), f.add_adopted());
    let before = f.snapshot();

    let ops = f.operations().await;
    let changing: Vec<_> = ops
        .iter()
        .filter(|(m, p)| *m != Method::GET && !public(m, p))
        .collect();
    assert!(
        changing.len() >= 15,
        "only {} state-changing operations",
        changing.len()
    );
    // (CSRF header, Origin) pairs that must be refused.
    let bad = [
        (None, Some(ORIGIN)),
        (Some(""), Some(ORIGIN)),
        (Some("0000"), Some(ORIGIN)),
        (Some(b.csrf.as_str()), Some(ORIGIN)),
        (Some(a.token.as_str()), Some(ORIGIN)),
        (Some(a.csrf.as_str()), Some("https://evil.example")),
        (Some(a.csrf.as_str()), Some("http://hearth.test")),
        (Some(a.csrf.as_str()), Some("https://hearth.test.evil.example")),
        (Some(a.csrf.as_str()), Some("null")),
    ];
    for (method, path) in changing {
        // Revoking b's session would show if the guard let it through.
        let uri = concrete(path, &pending, &adopted, &b_id);
        let body = body_for(method, path);
        for (csrf, origin) in &bad {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(header::HOST, HOST)
                .header(header::COOKIE, format!("{COOKIE}={}", a.token));
            if let Some(t) = csrf {
                req = req.header("x-csrf-token", *t);
            }
            if let Some(o) = origin {
                req = req.header(header::ORIGIN, *o);
            }
            let req = match &body {
                Some(v) => req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(v.to_string())),
                None => req.body(Body::empty()),
            };
            let r = f.send(req.unwrap()).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path} with csrf {:?} origin {origin:?}",
                csrf.map(|c| c.len())
            );
            assert!(r.error().contains("CSRF") || r.error().contains("cross-origin"));
        }
    }
    assert_eq!(f.snapshot(), before, "a forged request changed something");
    assert!(f.alive(&a).await && f.alive(&b).await);
    let r = f.get("/api/totp/qr.svg", Some(&a)).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a forged request started enrolment"
    );

    // The same requests with the right token go through.
    let r = f
        .call(
            Method::POST,
            &format!("/api/devices/{pending}/ignore"),
            None,
            Some(&a),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f
        .call(Method::DELETE, &format!("/api/sessions/{b_id}"), None, Some(&a))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!f.alive(&b).await);
    assert!(f.store.lock().unwrap().device(&pending).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_login_refuse_other_origins() {
    let f = Fixture::new().await;
    for (path, body) in [
        (
            "/api/setup",
            json!({ "code": f.setup_code, "username": OWNER, "password": PASSWORD }),
        ),
        ("/api/login", json!({ "username": OWNER, "password": PASSWORD })),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "https://evil.example")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let r = f.send(req).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "cross-origin");
        assert!(r.set_cookie().is_none());
    }
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 0);
    // The refused setup did not spend the code.
    f.owner().await;
}

// ---- bodies ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let adopted = f.add_adopted();
    let before = f.snapshot();
    let big = "a".repeat(MAX_BODY + 1);
    let cases = [
        (
            Method::POST,
            "/api/login".to_owned(),
            json!({ "username": OWNER, "password": big }),
        ),
        (
            Method::PATCH,
            format!("/api/devices/{adopted}"),
            json!({ "nickname": big }),
        ),
        (
            Method::POST,
            "/api/password".to_owned(),
            json!({ "current": PASSWORD, "new": big }),
        ),
    ];
    for (method, path, body) in cases {
        let r = f.call(method.clone(), &path, Some(&body), Some(&owner)).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}");
        assert!(!r.error().is_empty());
    }
    // Without a Content-Length, the limit holds as the body streams in.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b' '; 1024])).collect();
    let req = Fixture::request(Method::POST, "/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(f.snapshot(), before);

    // Just under the limit is read (and refused on its merits).
    let mut body = json!({ "code": "AAAA-BBBB-CCCC", "username": OWNER, "password": "" });
    let room = MAX_BODY - body.to_string().len();
    body["password"] = json!("p".repeat(room));
    assert_eq!(body.to_string().len(), MAX_BODY);
    let req = Fixture::request(Method::POST, "/api/setup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::CONFLICT);
    // The server is still answering.
    assert!(f.alive(&owner).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_malformed_bodies_are_refused() {
    let f = Fixture::new().await;
    let r = f
        .post_json(
            "/api/setup",
            &json!({ "code": f.setup_code, "username": OWNER, "password": PASSWORD, "admin": true }),
            None,
        )
        .await;
    assert!(
        matches!(
            r.status,
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
        ),
        "{}",
        r.status
    );
    assert!(r.error().contains("unknown field `admin`"), "{}", r.error());
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 0);

    let owner = f.owner().await;
    let adopted = f.add_adopted();
    let before = f.snapshot();
    let cases = [
        (
            Method::POST,
            "/api/login".to_owned(),
            json!({ "username": OWNER, "password": PASSWORD, "remember": true }),
            "remember",
        ),
        (
            Method::POST,
            "/api/password".to_owned(),
            json!({ "current": PASSWORD, "new": NEW_PASSWORD, "others": "keep" }),
            "others",
        ),
        // A status cannot be set through an update.
        (
            Method::PATCH,
            format!("/api/devices/{adopted}"),
            json!({ "nickname": "Renamed", "status": "pending" }),
            "status",
        ),
        (
            Method::POST,
            format!("/api/devices/{adopted}/command"),
            json!({ "power": true, "topic": "cmnd/other/POWER" }),
            "topic",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = f.call(method.clone(), &path, Some(&body), Some(&owner)).await;
        assert!(
            matches!(
                r.status,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            ),
            "{method} {path}: {}",
            r.status
        );
        assert!(
            r.error().contains(&format!("unknown field `{field}`")),
            "{method} {path}: {}",
            r.error()
        );
    }
    assert_eq!(f.snapshot(), before);

    // Not JSON, or not said to be JSON.
    let req = Fixture::request(Method::POST, "/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"username\":"))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.error().is_empty());
    let req = Fixture::request(Method::POST, "/api/login")
        .body(Body::from(
            json!({ "username": OWNER, "password": PASSWORD }).to_string(),
        ))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.error().to_lowercase().contains("content-type"));
}

// ---- headers and the document ------------------------------------------

fn check_security_headers(what: &str, r: &Reply) {
    let h = &r.headers;
    let get = |name: &str| {
        h.get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let hsts = get("strict-transport-security");
    let max_age: u64 = hsts
        .split(';')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS {hsts:?}"));
    assert!(max_age >= 180 * 24 * 3600, "{what}: HSTS max-age {max_age}");
    let csp = get("content-security-policy");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(!h.contains_key(header::SERVER), "{what}: a Server header");
    assert!(!h.contains_key("x-powered-by"), "{what}: X-Powered-By");
    for (name, value) in h {
        let v = value.to_str().unwrap_or("");
        assert!(
            !v.contains(env!("CARGO_PKG_VERSION")) && !v.to_lowercase().contains("axum"),
            "{what}: {name} carries a version banner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let f = Fixture::new().await;
    let mut replies = vec![
        ("GET /", f.get("/", None).await),
        ("GET /api/state", f.get("/api/state", None).await),
        ("GET /api/openapi.json", f.get("/api/openapi.json", None).await),
        ("GET /ca.pem", f.get("/ca.pem", None).await),
        ("GET /nowhere", f.get("/nowhere", None).await),
        ("GET /api/nowhere", f.get("/api/nowhere", None).await),
        ("GET /api/devices", f.get("/api/devices", None).await),
        ("GET /api/login", f.get("/api/login", None).await),
        (
            "POST /api/setup wrong code",
            f.setup_from(addr(1), "AAAA-BBBB-CCCC", OWNER, PASSWORD).await,
        ),
        (
            "POST /api/login unknown field",
            f.post_json("/api/login", &json!({ "x": 1 }), None).await,
        ),
        (
            "POST /api/login too big",
            f.post_json("/api/login", &json!({ "x": "a".repeat(MAX_BODY) }), None)
                .await,
        ),
    ];
    let owner = f.owner().await;
    replies.push(("GET /api/devices", f.get("/api/devices", Some(&owner)).await));
    replies.push(("GET /api/privacy", f.get("/api/privacy", Some(&owner)).await));
    let head = Fixture::request(Method::HEAD, "/api/state")
        .body(Body::empty())
        .unwrap();
    replies.push(("HEAD /api/state", f.send(head).await));
    let forged = Fixture::request(Method::POST, "/api/logout")
        .header(header::COOKIE, format!("{COOKIE}={}", owner.token))
        .body(Body::empty())
        .unwrap();
    replies.push(("POST /api/logout without CSRF", f.send(forged).await));
    replies.push((
        "POST /api/logout",
        f.post_json("/api/logout", &json!({}), Some(&owner)).await,
    ));

    let statuses: std::collections::HashSet<u16> = replies.iter().map(|(_, r)| r.status.as_u16()).collect();
    for s in [200, 204, 401, 403, 404, 405, 413, 422] {
        assert!(statuses.contains(&s), "no {s} among the responses checked");
    }
    for (what, r) in &replies {
        check_security_headers(what, r);
        if what.contains(" /api/") {
            assert_eq!(r.headers[header::CACHE_CONTROL], "no-store", "{what}");
        }
    }
}
