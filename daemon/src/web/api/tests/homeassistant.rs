//! The Home Assistant connection, and what the privacy page says of it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_connection_is_shown_once_rotated_and_turned_off() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let base = "/api/integrations/homeassistant";
    let st = f.get(base, Some(&owner)).await.json();
    assert_eq!(
        (st["enabled"].as_bool(), st["exposed"].as_u64()),
        (Some(false), Some(0))
    );
    assert_eq!(st["settings"]["share_device_details"], false);
    assert_eq!(st["ca_cert_url"], "/ca.pem");
    assert!(st.get("password").is_none());

    let r = f
        .call(Method::POST, &format!("{base}/enable"), None, Some(&owner))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let first = r.json();
    assert_eq!(first["mqtt"]["username"], "homeassistant");
    assert_eq!(first["discovery_prefix"], "homeassistant");
    let password = first["mqtt"]["password"].as_str().unwrap().to_owned();
    assert!(password.len() == 32 && password.bytes().all(|b| b.is_ascii_hexdigit()));
    // Never again: not in the status, and a second enable hands out none.
    let st = f.get(base, Some(&owner)).await;
    assert!(!String::from_utf8_lossy(&st.body).contains(&password));
    assert_eq!(st.json()["enabled"], true);
    let again = f
        .call(Method::POST, &format!("{base}/enable"), None, Some(&owner))
        .await;
    assert_json_error(&again, StatusCode::BAD_REQUEST, "rotate");
    assert!(again.json().get("mqtt").is_none());

    let rotated = f
        .call(Method::POST, &format!("{base}/rotate"), None, Some(&owner))
        .await
        .json();
    assert_ne!(rotated["mqtt"]["password"], password.as_str());

    let off = f
        .call(Method::POST, &format!("{base}/disable"), None, Some(&owner))
        .await
        .json();
    assert_eq!(off["was_enabled"], true);
    assert_eq!(f.get(base, Some(&owner)).await.json()["enabled"], false);
    let rotate_off = f
        .call(Method::POST, &format!("{base}/rotate"), None, Some(&owner))
        .await;
    assert_json_error(&rotate_off, StatusCode::NOT_FOUND, "turn it on first");
    let events = f.audit_events();
    for e in [
        "homeassistant_enabled",
        "homeassistant_rotated",
        "homeassistant_disabled",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} not audited: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_settings_change_and_show_on_the_privacy_page() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let base = "/api/integrations/homeassistant";
    let privacy = f.get("/api/privacy", Some(&owner)).await.json();
    assert_eq!(privacy["shared"][0]["with"], "Home Assistant");
    assert_eq!(privacy["shared"][0]["enabled"], false);

    let r = f
        .call(
            Method::PATCH,
            base,
            Some(&json!({ "share_device_details": true, "discovery": "component" })),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({ "share_device_details": true, "discovery": "component" })
    );
    assert!(f.audit_events().iter().any(|e| e == "homeassistant_settings"));
    for bad in [
        json!({ "share_everything": true }),
        json!({ "discovery": "yaml" }),
        json!({ "share_device_details": "yes" }),
    ] {
        let r = f.call(Method::PATCH, base, Some(&bad), Some(&owner)).await;
        assert!(r.status.is_client_error(), "{bad}: {}", r.status);
    }
    let st = f.get(base, Some(&owner)).await.json();
    assert_eq!(st["settings"]["discovery"], "component");

    f.call(Method::POST, &format!("{base}/enable"), None, Some(&owner))
        .await;
    let privacy = f.get("/api/privacy", Some(&owner)).await.json();
    let line = &privacy["shared"][0];
    assert_eq!(
        (line["enabled"].as_bool(), line["share_device_details"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(line["what"].as_str().unwrap().contains("firmware too"), "{line}");
}
