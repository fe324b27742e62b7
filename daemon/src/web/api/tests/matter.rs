//! The Matter bridge on the dashboard: off, it says how to turn it on; on,
//! the owner opens and closes pairing (audited), sees the codes only while
//! it is open, and lists and removes controllers.

use super::*;

/// Every Matter route, as (method, path).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/matter"),
    ("GET", "/api/matter/qr.svg"),
    ("POST", "/api/matter/pairing"),
    ("DELETE", "/api/matter/pairing"),
    ("GET", "/api/matter/fabrics"),
    ("DELETE", "/api/matter/fabrics/1"),
];

fn matter_events(f: &Fixture) -> Vec<String> {
    f.audit_events()
        .into_iter()
        .filter(|e| e.starts_with("matter_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_matter_off_each_route_says_how_to_turn_it_on() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let r = f.get("/api/matter", Some(&owner)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["enabled"], false);
    assert_eq!(v["pairing"]["open"], false);
    let how = v["how_to_enable"].as_str().unwrap();
    assert!(
        how.contains("enabled = true under [matter]") && how.contains("restart"),
        "{how}"
    );
    assert!(v["pairing"].get("manual_code").is_none());
    for (method, path) in &ROUTES[1..] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = f.call(m, path, None, Some(&owner)).await;
        assert_json_error(&r, StatusCode::NOT_FOUND, "the Matter bridge is off");
        assert!(r.error().contains("[matter]"), "{method} {path}: {}", r.error());
    }
    assert!(matter_events(&f).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_opens_and_closes_by_the_owner_with_the_codes_only_while_open() {
    let f = Fixture::with_matter().await;
    let matter = f.matter.clone().unwrap();
    let codes = matter.codes();
    let owner = f.owner().await;
    let own_id = session_id(&f, &owner).await;
    let shows_codes = |r: &Reply| {
        let body = String::from_utf8_lossy(&r.body);
        body.contains(&codes.manual) || body.contains(&codes.manual_pretty) || body.contains(&codes.qr)
    };

    let closed = f.get("/api/matter", Some(&owner)).await;
    assert_eq!(closed.status, StatusCode::OK);
    let v = closed.json();
    assert_eq!(
        (v["enabled"].as_bool(), v["pairing"]["open"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (v["controllers"].as_u64(), v["window_secs"].as_u64()),
        (Some(0), Some(900))
    );
    assert!(v["port"].as_u64().is_some_and(|p| p > 0));
    assert!(!shows_codes(&closed));
    let qr = f.get("/api/matter/qr.svg", Some(&owner)).await;
    assert_json_error(&qr, StatusCode::NOT_FOUND, "pairing is not open");

    let opened = f
        .call(Method::POST, "/api/matter/pairing", None, Some(&owner))
        .await;
    assert_eq!(
        opened.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&opened.body)
    );
    assert_eq!(opened.headers[header::CACHE_CONTROL], "no-store");
    let v = opened.json();
    let p = &v["pairing"];
    assert_eq!(p["open"], true);
    assert_eq!(p["manual_code"], codes.manual.as_str());
    assert_eq!(p["manual_code_pretty"], codes.manual_pretty.as_str());
    let manual = p["manual_code"].as_str().unwrap();
    assert!(manual.len() == 11 && manual.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(p["qr_svg"], "/api/matter/qr.svg");
    let left = p["closes_in_secs"].as_i64().unwrap();
    assert!((890..=900).contains(&left), "{left}");
    let closes_at = p["closes_at"].as_i64().unwrap();
    let now = unix_now() as i64;
    assert!(
        (now + 890..=now + 900).contains(&closes_at),
        "{closes_at} vs {now}"
    );
    // The status shows the same while it is open.
    let again = f.get("/api/matter", Some(&owner)).await.json();
    assert_eq!(again["pairing"]["manual_code"], codes.manual.as_str());
    assert_eq!(again["pairing"]["closes_at"], closes_at);

    let qr = f.get("/api/matter/qr.svg", Some(&owner)).await;
    assert_eq!(qr.status, StatusCode::OK);
    assert_eq!(qr.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(qr.headers[header::CACHE_CONTROL], "no-store");
    let svg = String::from_utf8(qr.body.clone()).unwrap();
    assert!(svg.contains("<svg") && svg.contains("<path"), "{}", svg.len());
    assert!(!svg.to_lowercase().contains("style"));
    assert_eq!(svg, codes.qr_svg());
    // The dashboard's CSP lets the page show it as a same-origin image.
    let csp = qr.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("img-src 'self'"), "{csp}");
    let page = f.get("/", None).await;
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("img-src 'self'")
    );

    // Opening an open window changes nothing, its deadline included.
    let twice = f
        .call(Method::POST, "/api/matter/pairing", None, Some(&owner))
        .await
        .json();
    assert_eq!(twice["pairing"]["closes_at"], closes_at);

    let events = f.snapshot().audit;
    let opened: Vec<_> = f
        .store
        .lock()
        .unwrap()
        .audit(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "matter_pairing_opened")
        .collect();
    assert_eq!(opened.len(), 2, "{events:?}");
    assert!(
        opened.iter().all(|e| e.actor.contains(&own_id)),
        "{:?}",
        opened[0].actor
    );
    assert!(
        !events
            .iter()
            .any(|(_, d)| d.contains(&codes.manual) || d.contains(&codes.qr)),
        "a code reached the audit log"
    );

    let stop = f
        .call(Method::DELETE, "/api/matter/pairing", None, Some(&owner))
        .await;
    assert_eq!(stop.status, StatusCode::OK);
    let v = stop.json();
    assert_eq!(
        (v["was_open"].as_bool(), v["pairing"]["open"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(!shows_codes(&stop));
    assert!(!matter.status().await.unwrap().pairing_open);
    let closed = f.get("/api/matter", Some(&owner)).await;
    assert!(!shows_codes(&closed));
    assert_eq!(closed.json()["pairing"]["open"], false);
    let qr = f.get("/api/matter/qr.svg", Some(&owner)).await;
    assert_eq!(qr.status, StatusCode::NOT_FOUND);
    // Closing a closed window answers so, and is not audited again.
    let before = matter_events(&f);
    let v = f
        .call(Method::DELETE, "/api/matter/pairing", None, Some(&owner))
        .await
        .json();
    assert_eq!(v["was_open"], false);
    assert_eq!(matter_events(&f), before);
    assert_eq!(
        before,
        [
            "matter_pairing_closed",
            "matter_pairing_opened",
            "matter_pairing_opened"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_are_listed_and_an_unknown_one_is_not_removed() {
    let f = Fixture::with_matter().await;
    let owner = f.owner().await;
    let r = f.get("/api/matter/fabrics", Some(&owner)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({ "controllers": [] }));
    for index in ["1", "0", "254", "255", "-1", "abc"] {
        let r = f
            .call(
                Method::DELETE,
                &format!("/api/matter/fabrics/{index}"),
                None,
                Some(&owner),
            )
            .await;
        assert_json_error(&r, StatusCode::NOT_FOUND, "no such controller");
    }
    assert!(matter_events(&f).is_empty(), "{:?}", matter_events(&f));
}

/// The Matter routes refuse a request without a session, or a change
/// without its CSRF token or from another origin, with the bridge on:
/// pairing stays closed and nothing is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matter_routes_need_a_session_and_the_csrf_token() {
    let f = Fixture::with_matter().await;
    let owner = f.owner().await;
    let before = f.snapshot();
    for (method, path) in ROUTES {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = f.call(m.clone(), path, None, None).await;
        assert_json_error(&r, StatusCode::UNAUTHORIZED, "not logged in");
        if *method == "GET" {
            continue;
        }
        let forged = [
            Browser {
                csrf: String::new(),
                ..owner.clone()
            },
            Browser {
                csrf: "0".repeat(owner.csrf.len()),
                ..owner.clone()
            },
        ];
        for who in &forged {
            let r = f.call(m.clone(), path, None, Some(who)).await;
            assert_json_error(&r, StatusCode::FORBIDDEN, "CSRF");
        }
        let req = Request::builder()
            .method(m)
            .uri(*path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "https://evil.example")
            .header(header::COOKIE, format!("{COOKIE}={}", owner.token))
            .header("x-csrf-token", &owner.csrf)
            .body(Body::empty())
            .unwrap();
        let r = f.send(req).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "cross-origin");
    }
    assert_eq!(f.snapshot(), before);
    let matter = f.matter.clone().unwrap();
    assert!(!matter.status().await.unwrap().pairing_open);
    // Nothing new prints a code in `Debug`.
    let codes = matter.codes();
    for shown in [format!("{matter:?}"), format!("{codes:?}")] {
        assert!(
            !shown.contains(&codes.manual) && !shown.contains("MT:"),
            "{shown}"
        );
    }
}
