//! Standing warnings: grouped and named, acknowledged all at once; the
//! audit log's names.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_name_devices_and_are_acknowledged_all_at_once() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let a_id = session_id(&f, &a).await;
    let kettle = f.add_adopted();
    let r = f
        .call(
            Method::PATCH,
            &format!("/api/devices/{kettle}"),
            Some(&json!({ "expose_ha": true })),
            Some(&a),
        )
        .await;
    assert!(r.status.is_success(), "{}", String::from_utf8_lossy(&r.body));
    crate::store::warnings::raise(
        &mut f.store.lock().unwrap(),
        crate::store::warnings::RELAY_ENABLED,
    )
    .unwrap();

    let list = f.get("/api/warnings", Some(&a)).await.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let exposed = &list[0];
    assert_eq!(exposed["group"], "exposed_homeassistant");
    assert_eq!(
        exposed["text"],
        "\u{201c}Kettle\u{201d} was exposed to Home Assistant"
    );
    assert_eq!(exposed["device_id"], kettle.as_str());
    assert!(
        exposed["what"].as_str().unwrap().contains(kettle.as_str()),
        "raw words kept"
    );
    assert_eq!(list[1]["group"], "relay");
    assert!(list[1].get("device_id").is_none());

    // The audit log names the device and the session; the raw fields and
    // the export keep the ids.
    let audit = f.get("/api/audit", Some(&a)).await.json();
    let changed = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "device_exposure_changed")
        .unwrap()
        .clone();
    let named = changed["detail_named"].as_str().unwrap();
    assert!(named.contains("\u{201c}Kettle\u{201d}"), "{named}");
    assert!(!named.contains(kettle.as_str()), "{named}");
    assert!(changed["detail"].as_str().unwrap().contains(kettle.as_str()));
    assert_eq!(changed["actor"], format!("session {a_id}"));
    assert_eq!(changed["actor_name"], "you, in this browser");
    let exported = f.get("/api/audit/export", Some(&a)).await.json();
    assert!(
        exported
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("detail_named").is_none() && e.get("actor_name").is_none())
    );

    // Acknowledging all needs the session and its CSRF token.
    let before = f.snapshot();
    let r = f
        .call(Method::POST, "/api/warnings/acknowledge", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let no_csrf = Fixture::request(Method::POST, "/api/warnings/acknowledge")
        .header(header::COOKIE, format!("{COOKIE}={}", a.token))
        .body(Body::empty())
        .unwrap();
    assert_json_error(&f.send(no_csrf).await, StatusCode::FORBIDDEN, "csrf");
    let wrong_csrf = Browser {
        token: a.token.clone(),
        csrf: "0".repeat(a.csrf.len()),
    };
    let r = f
        .call(Method::POST, "/api/warnings/acknowledge", None, Some(&wrong_csrf))
        .await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "csrf");
    assert_eq!(f.snapshot(), before, "a refused request changes nothing");
    assert_eq!(
        f.get("/api/warnings", Some(&a))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let r = f
        .call(Method::POST, "/api/warnings/acknowledge", None, Some(&a))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({ "acknowledged": 2 }));
    assert_eq!(f.get("/api/warnings", Some(&a)).await.json(), json!([]));
    let acks = f
        .audit_events()
        .into_iter()
        .filter(|e| e == "warning_acknowledged")
        .count();
    assert_eq!(acks, 2, "each acknowledged warning is audited");
    let r = f
        .call(Method::POST, "/api/warnings/acknowledge", None, Some(&a))
        .await;
    assert_eq!(r.json(), json!({ "acknowledged": 0 }));
}
