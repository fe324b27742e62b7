//! Sessions: logout, revocation, password changes and timeouts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_makes_the_old_cookie_useless() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let r = f.post_json("/api/logout", &json!({}), Some(&owner)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let clear = r.set_cookie().expect("the cookie is cleared");
    assert!(clear.starts_with(&format!("{COOKIE}=;")));
    assert!(clear.contains("Max-Age=0"));

    // A copy kept by an attacker is worth nothing.
    assert_eq!(
        f.get("/api/session", Some(&owner)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.get("/api/devices", Some(&owner)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = f.post_json("/api/totp/enroll", &json!({}), Some(&owner)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.post_json("/api/logout", &json!({}), Some(&owner)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.snapshot().sessions, 0);
    assert!(f.audit_events().contains(&"logout".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_ends_it_and_only_it() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let list = f.get("/api/sessions", Some(&a)).await.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let b_id = session_id(&f, &b).await;
    assert_ne!(b_id, session_id(&f, &a).await);

    let path = format!("/api/sessions/{b_id}");
    let r = f.call(Method::DELETE, &path, None, Some(&a)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!f.alive(&b).await, "a revoked session still works");
    assert!(f.alive(&a).await);
    assert!(f.audit_events().contains(&"session_revoked".to_owned()));

    // Gone, unknown and malformed ids are all just "no such session".
    for path in [
        path.as_str(),
        "/api/sessions/00000000000000000000000000000000",
        "/api/sessions/x",
    ] {
        let r = f.call(Method::DELETE, path, None, Some(&a)).await;
        assert_json_error(&r, StatusCode::NOT_FOUND, "no such session");
    }
    assert_eq!(f.snapshot().sessions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_can_be_required_at_the_next_login() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let r = f.post_json("/api/password/require", &json!({}), Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sessions_ended"], 1);
    assert!(!f.alive(&b).await, "other sessions end");
    assert!(f.alive(&a).await, "the asking session goes on");
    assert_eq!(f.get("/api/devices", Some(&a)).await.status, StatusCode::OK);
    assert!(f.audit_events().contains(&"password_change_required".to_owned()));

    // The next login: only the session, the password change and logout
    // answer until the password is changed.
    let c = f.login(OWNER, PASSWORD, None).await.browser();
    let me = f.get("/api/session", Some(&c)).await.json();
    assert_eq!(me["must_change_password"], true);
    for path in ["/api/devices", "/api/audit", "/api/privacy"] {
        let r = f.get(path, Some(&c)).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "change your password first");
    }
    let r = f.post_json("/api/lockdown", &json!({}), Some(&c)).await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "change your password first");
    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
            Some(&c),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get("/api/devices", Some(&c)).await.status, StatusCode::OK);
    let d = f.login(OWNER, NEW_PASSWORD, None).await.browser();
    assert_eq!(
        f.get("/api/session", Some(&d)).await.json()["must_change_password"],
        false
    );
    assert_eq!(f.get("/api/devices", Some(&d)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_other_sessions() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();

    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": "not the password at all", "new": NEW_PASSWORD }),
            Some(&a),
        )
        .await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "current password is wrong");
    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": PASSWORD, "new": "short" }),
            Some(&a),
        )
        .await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "at least 12");
    assert!(f.alive(&b).await, "a refused change ended a session");

    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
            Some(&a),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!f.alive(&b).await, "another session outlived the password change");
    assert!(f.alive(&a).await, "the session that changed it ended");
    assert_eq!(f.snapshot().sessions, 1);

    assert_eq!(
        f.login(OWNER, PASSWORD, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    f.login(OWNER, NEW_PASSWORD, None).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_end_sessions() {
    let f = Fixture::with_timeouts(Duration::from_millis(400), MAX).await;
    let owner = f.owner().await;
    assert!(f.alive(&owner).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!f.alive(&owner).await, "an idle session still works");
    assert_eq!(f.snapshot().sessions, 0);

    let f = Fixture::with_timeouts(IDLE, Duration::from_millis(900)).await;
    let owner = f.owner().await;
    // In use all along, it still ends at its absolute expiry.
    let mut alive_at_end = true;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        alive_at_end = f.alive(&owner).await;
    }
    assert!(!alive_at_end, "a session outlived its absolute expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_is_named_by_its_browser_and_address_never_its_user_agent() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    // A phone logs in, from another address on the LAN.
    let phone: SocketAddr = "192.168.1.77:51000".parse().unwrap();
    let agent = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.39 Mobile Safari/537.36";
    let req = Fixture::request(Method::POST, "/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, agent)
        .body(Body::from(
            json!({ "username": OWNER, "password": PASSWORD }).to_string(),
        ))
        .unwrap();
    let b = f.send_from(phone, req).await.browser();
    let b_id = session_id(&f, &b).await;

    let r = f.get("/api/sessions", Some(&a)).await;
    let list = r.json();
    let other = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == b_id.as_str())
        .expect("the phone's session is listed")
        .clone();
    assert_eq!(other["browser"], "Chrome");
    assert_eq!(other["system"], "Android");
    assert_eq!(other["from"], "192.168.1.77");
    // The User-Agent itself, with its versions, is not repeated.
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(!text.contains("131.0") && !text.contains("Pixel"), "{text}");
    // A session opened without a User-Agent still has its address.
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap();
    assert_eq!(mine["browser"], Value::Null);
    assert!(mine["from"].is_string());
}
