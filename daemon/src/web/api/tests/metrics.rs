//! `/metrics`: who may scrape it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_counts_for_loopback_only_by_default() {
    let f = Fixture::new().await;
    let _owner = f.owner().await;
    assert_eq!(
        f.login(OWNER, "not the password", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    f.login(OWNER, PASSWORD, None).await.browser();
    let scrape = |peer: SocketAddr| {
        let req = Fixture::request(Method::GET, "/metrics")
            .body(Body::empty())
            .unwrap();
        f.send_from(peer, req)
    };
    // From the LAN: refused, saying how to open it.
    let r = scrape(addr(HOME)).await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "web.metrics");
    // From this hub, over IPv4 or IPv6.
    for peer in ["127.0.0.1:40000", "[::1]:40000"] {
        let r = scrape(peer.parse().unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = String::from_utf8(r.body).unwrap();
        for line in [
            "hearth_logins_total 1",
            "hearth_login_failures_total 1",
            "hearth_relay_calls_total 0",
            "hearth_mqtt_connections 0",
            "hearth_devices{kind=\"bulb\",state=\"online\"} 0",
            "hearth_mqtt_acl_denied_total{action=\"publish\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Every sample is a name, fixed labels and a number.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{l}");
            assert!(series.starts_with("hearth_"), "{l}");
        }
        let store = text
            .lines()
            .find(|l| l.starts_with("hearth_store_bytes "))
            .unwrap();
        assert!(
            store.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap() > 4096,
            "{store}"
        );
    }
}
