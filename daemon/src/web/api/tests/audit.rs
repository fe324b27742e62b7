//! The audit log: who did what, filters and the export.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_actor_and_outcome_filters_and_exports() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let a_id = session_id(&f, &a).await;
    f.login_from(addr(7), OWNER, "not the password at all", None)
        .await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let b_id = session_id(&f, &b).await;
    let r = f
        .call(Method::DELETE, &format!("/api/sessions/{b_id}"), None, Some(&a))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let all = f.get("/api/audit", Some(&a)).await.json();
    let all = all.as_array().unwrap();
    let find = |event: &str| all.iter().find(|e| e["event"] == event).unwrap().clone();
    let failed = find("login_failed");
    assert_eq!(
        (failed["actor"].as_str(), failed["outcome"].as_str()),
        (Some("visitor"), Some("refused"))
    );
    assert!(failed["detail"].as_str().unwrap().contains("192.0.2.7"));
    let revoked = find("session_revoked");
    assert_eq!(
        revoked["actor"],
        format!("session {a_id}"),
        "the revoking session acts"
    );
    assert_eq!(revoked["outcome"], "ok");
    assert!(revoked["detail"].as_str().unwrap().contains(&b_id));
    assert_eq!(find("login")["outcome"], "ok");
    // Each entry carries the words the dashboard shows for its type, from
    // the one list of types, which the API also serves.
    assert_eq!(find("session_revoked")["wording"], "Session revoked");
    let types = f.get("/api/audit/types", Some(&a)).await.json();
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), crate::store::AuditKind::ALL.len());
    for e in all {
        assert!(
            types
                .iter()
                .any(|t| t["event"] == e["event"] && t["wording"] == e["wording"]),
            "{e}"
        );
    }
    assert_eq!(
        f.get("/api/audit/types", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");

    // By type, by outcome, by time, and a limit.
    let only = f.get("/api/audit?event=login_failed", Some(&a)).await.json();
    assert_eq!(only.as_array().unwrap().len(), 1);
    let refused = f.get("/api/audit?outcome=refused", Some(&a)).await.json();
    assert!(
        refused
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "refused")
    );
    assert!(!refused.as_array().unwrap().is_empty());
    let future = f.get("/api/audit?since=4102444800", Some(&a)).await.json();
    assert_eq!(future, json!([]));
    let past = f.get("/api/audit?until=1000000000", Some(&a)).await.json();
    assert_eq!(past, json!([]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let window = f
        .get(
            &format!("/api/audit?since={}&until={}", now - 600, now + 600),
            Some(&a),
        )
        .await
        .json();
    assert_eq!(window.as_array().unwrap().len(), all.len());
    let one = f.get("/api/audit?limit=1", Some(&a)).await.json();
    assert_eq!(one.as_array().unwrap()[0]["seq"], all[0]["seq"]);
    // Unknown or malformed filters are a clear 400, never ignored.
    for bad in [
        "/api/audit?who=me",
        "/api/audit?since=yesterday",
        "/api/audit?limit=-1",
        "/api/audit?event=no_such_event",
    ] {
        assert_eq!(
            f.get(bad, Some(&a)).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // Export: every kept event, oldest first, as a file; a session needed.
    let r = f.get("/api/audit/export", Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let exported = r.json();
    let exported = exported.as_array().unwrap();
    assert_eq!(exported.len(), all.len());
    assert_eq!(exported[0]["seq"], all[all.len() - 1]["seq"]);
    assert_eq!(
        f.get("/api/audit/export", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}
