//! First run, login and two-factor authentication.

use super::*;

// ---- first run ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_code_works_once_then_dies() {
    let f = Fixture::new().await;
    let file = f.data_dir.join(SETUP_CODE_FILE);
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&file).expect("the setup-code file exists before setup");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), f.setup_code);
    }
    let state = f.get("/api/state", None).await.json();
    assert_eq!(state["setup_needed"], true);
    assert_eq!(state["logged_in"], false);

    // Typed by hand: lower case, without dashes.
    let typed = f.setup_code.replace('-', "").to_lowercase();
    let r = f.setup(&typed, OWNER, PASSWORD).await;
    let owner = r.browser();
    assert_eq!(r.json()["username"], OWNER);
    assert!(!file.exists(), "the setup-code file outlives setup");
    let cookie = format!("{COOKIE}={}", owner.token);
    let req = Fixture::request(Method::GET, "/api/state")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let state = f.send(req).await.json();
    assert_eq!(state["setup_needed"], false);
    assert_eq!(state["logged_in"], true);

    // The same code, or any other, cannot make a second owner.
    for code in [f.setup_code.as_str(), "AAAA-BBBB-CCCC"] {
        let r = f.setup(code, "intruder", NEW_PASSWORD).await;
        assert_json_error(&r, StatusCode::CONFLICT, "already set up");
        assert!(r.set_cookie().is_none());
    }
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 1);
    assert!(!file.exists());
    assert!(f.alive(&owner).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_code_cannot_make_two_owners_at_once() {
    let f = Fixture::new().await;
    // Both requests carry the right code and race through the slow hash.
    let (a, b) = tokio::join!(
        f.setup_from(addr(1), &f.setup_code, "first", PASSWORD),
        f.setup_from(addr(2), &f.setup_code, "second", NEW_PASSWORD),
    );
    let ok = [&a, &b].iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(ok, 1, "statuses {} and {}", a.status, b.status);
    let refused = if a.status == StatusCode::OK { &b } else { &a };
    assert!(
        matches!(refused.status, StatusCode::CONFLICT | StatusCode::FORBIDDEN),
        "{}",
        refused.status
    );
    assert!(refused.set_cookie().is_none());
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_setup_code_is_refused_and_throttled_per_address() {
    let f = Fixture::new().await;
    let file = f.data_dir.join(SETUP_CODE_FILE);
    for _ in 0..crate::accounts::throttle::FREE_FAILURES {
        let r = f.setup_from(addr(1), "AAAA-BBBB-CCCC", OWNER, PASSWORD).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "setup code is wrong");
        assert!(r.set_cookie().is_none());
    }
    assert_eq!(f.get("/api/state", None).await.json()["setup_needed"], true);
    assert!(file.exists());
    assert_eq!(f.audit_events(), vec!["setup_refused"; 5]);

    // That address now waits, even with the right code.
    let r = f.setup_from(addr(1), &f.setup_code, OWNER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(r.json()["retry_after_secs"], wait);
    assert!(file.exists());

    // Another address is not held up by it.
    f.setup_from(addr(2), &f.setup_code, OWNER, PASSWORD)
        .await
        .browser();
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_weak_passwords_and_keeps_the_code() {
    let f = Fixture::new().await;
    let cases = [
        ("short pass", "at least 12"),
        ("Password1234!", "common"),
        ("qwertyuiop123", "common"),
        ("Marguerite2024!", "username"),
    ];
    for (password, why) in cases {
        let r = f.setup(&f.setup_code, "marguerite", password).await;
        assert_json_error(&r, StatusCode::BAD_REQUEST, why);
        assert!(!r.error().contains(password), "the error echoes the password");
        assert!(r.set_cookie().is_none());
    }
    let r = f.setup(&f.setup_code, "", PASSWORD).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "username");
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 0);
    assert!(f.data_dir.join(SETUP_CODE_FILE).exists());
    // A policy refusal is not a wrong code: nothing was throttled.
    f.owner().await;
}

// ---- login -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_does_not_tell_whether_the_user_exists() {
    let f = Fixture::new().await;
    f.owner().await;
    let unknown = f.login_from(addr(1), "nobody", PASSWORD, None).await;
    let wrong = f
        .login_from(addr(2), OWNER, "not the password at all", None)
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    for r in [&unknown, &wrong] {
        assert!(r.set_cookie().is_none());
        assert_eq!(r.json(), json!({ "error": "invalid username or password" }));
    }
    // Usernames are matched without regard to case or spaces around them.
    f.login(" Owner ", PASSWORD, None).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_host_bound_secure_and_strict() {
    let f = Fixture::new().await;
    let setup = f.setup(&f.setup_code, OWNER, PASSWORD).await;
    let login = f.login(OWNER, PASSWORD, None).await;
    for r in [&setup, &login] {
        let cookie = r.set_cookie().expect("a cookie");
        let mut parts = cookie.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        assert_eq!(name, "__Host-hearth");
        assert!(value.len() >= 22, "a 128-bit token");
        let attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        for want in ["secure", "httponly", "samesite=strict", "path=/"] {
            assert!(attrs.iter().any(|a| a == want), "{want} missing");
        }
        assert!(
            !attrs.iter().any(|a| a.starts_with("domain")),
            "a __Host- cookie has no Domain"
        );
        assert!(attrs.contains(&format!("max-age={}", MAX.as_secs())));
        // The token is never in the body; the CSRF token is, and differs.
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(value));
        assert_ne!(r.json()["csrf"], value);
    }
    assert_ne!(setup.browser().token, login.browser().token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_throttled_per_account() {
    let f = Fixture::new().await;
    f.owner().await;
    // Five addresses, one wrong guess each: only the account's key fills.
    for i in 0..crate::accounts::throttle::FREE_FAILURES {
        let r = f
            .login_from(addr(i as u8 + 1), OWNER, "not the password at all", None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let last_failure = std::time::Instant::now();
    // A fresh address with the right password still waits.
    let r = f.login_from(addr(50), OWNER, PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(r.set_cookie().is_none());
    // Other accounts are not held up by it.
    let r = f
        .login_from(addr(50), "somebody", "not the password at all", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The wait is short and ends; then the right password works.
    let wait = Duration::from_millis(1100).saturating_sub(last_failure.elapsed());
    tokio::time::sleep(wait).await;
    f.login_from(addr(50), OWNER, PASSWORD, None).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_throttled_per_address() {
    let f = Fixture::new().await;
    f.owner().await;
    // One address guessing at many accounts.
    for i in 0..crate::accounts::throttle::FREE_FAILURES {
        let r = f.login_from(addr(1), &format!("guess{i}"), PASSWORD, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = f.login_from(addr(1), OWNER, PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.json()["retry_after_secs"].as_u64().unwrap() >= 1);
    // The owner, elsewhere, is not locked out by it.
    f.login_from(addr(2), OWNER, PASSWORD, None).await.browser();
}

// ---- two-factor --------------------------------------------------------

/// Enrols `who` in TOTP; returns the secret, the step whose code confirmed
/// it, and the recovery codes.
async fn enrol(f: &Fixture, who: &Browser) -> (TotpSecret, u64, Vec<String>) {
    let r = f.post_json("/api/totp/enroll", &json!({}), Some(who)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let text = v["secret"].as_str().unwrap();
    let uri = v["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={text}")));
    let secret = TotpSecret::from_base32(text).unwrap();

    let qr = f.get("/api/totp/qr.svg", Some(who)).await;
    assert_eq!(qr.status, StatusCode::OK);
    assert_eq!(qr.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(String::from_utf8_lossy(&qr.body).contains("<svg"));

    let step = unix_now() / totp::PERIOD;
    let r = f
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": wrong_code(&secret, step) }),
            Some(who),
        )
        .await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "code is wrong");
    let r = f
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": code(&secret, step) }),
            Some(who),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let codes: Vec<String> = r.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, step, codes)
}

fn code(secret: &TotpSecret, step: u64) -> String {
    format!("{:06}", totp::code_at(secret, step))
}

/// Six digits that match no step near `step`.
fn wrong_code(secret: &TotpSecret, step: u64) -> String {
    let near: Vec<String> = (step.saturating_sub(2)..=step + 3)
        .map(|s| code(secret, s))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_window_and_replay() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let (secret, confirmed, _) = enrol(&f, &owner).await;
    assert_eq!(
        f.get("/api/session", Some(&owner)).await.json()["totp_enabled"],
        true
    );
    assert!(f.audit_events().contains(&"totp_enrolled".to_owned()));
    // Failures below stay under the throttle's free allowance per key
    // (account and address), so every refusal here is the code's doing.

    // The password alone is not enough, and says so only to who knows it.
    let r = f.login(OWNER, PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["totp_required"], true);
    assert!(r.set_cookie().is_none());
    let unknown = f
        .login_from(addr(1), "nobody", "not the password at all", None)
        .await;
    let wrong = f
        .login_from(addr(2), OWNER, "not the password at all", None)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    // A right code with a wrong password is still a wrong password.
    let step = unix_now() / totp::PERIOD;
    let r = f
        .login_from(
            addr(3),
            OWNER,
            "not the password at all",
            Some(&code(&secret, step + 1)),
        )
        .await;
    assert_eq!(r.body, unknown.body);

    // Codes count one step either side of now. The server's clock may move
    // on a step after `step` is read; each case holds either way.
    let step = unix_now() / totp::PERIOD;
    let r = f.login(OWNER, PASSWORD, Some(&code(&secret, step + 3))).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a code from the future worked"
    );
    assert_eq!(r.json()["totp_required"], true);
    // The code that confirmed enrolment is spent.
    let r = f.login(OWNER, PASSWORD, Some(&code(&secret, confirmed))).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the enrolment code was replayed"
    );

    // The next step's code is in the window (clock skew) and works once.
    let next = code(&secret, step + 1);
    let second = f.login(OWNER, PASSWORD, Some(&next)).await.browser();
    assert!(f.alive(&second).await);
    let r = f.login(OWNER, PASSWORD, Some(&next)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a TOTP code was replayed");
    assert_eq!(r.json()["totp_required"], true);
    assert!(r.set_cookie().is_none());
    // So is every earlier one, even inside the window.
    let r = f.login(OWNER, PASSWORD, Some(&code(&secret, step))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "an older TOTP code worked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_code_works_once() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let (_, _, codes) = enrol(&f, &owner).await;
    assert_eq!(codes.len(), totp::RECOVERY_CODES);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), codes.len());

    // Typed by hand: upper case, spaces for dashes.
    let typed = codes[0].to_uppercase().replace('-', " ");
    f.login(OWNER, PASSWORD, Some(&typed)).await.browser();
    assert!(f.audit_events().contains(&"recovery_code_used".to_owned()));
    let r = f.login(OWNER, PASSWORD, Some(&codes[0])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a recovery code worked twice");
    assert!(r.set_cookie().is_none());
    // It is not a password either.
    let r = f.login(OWNER, &codes[1], Some(&codes[1])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The others still work.
    f.login(OWNER, PASSWORD, Some(&codes[1])).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_moves_to_a_new_phone_only_with_the_password() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let (old, _, old_codes) = enrol(&f, &owner).await;
    // Enrolling over it is refused: a stolen session must not swap it.
    let r = f.post_json("/api/totp/enroll", &json!({}), Some(&owner)).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "set it up again with your password");
    let r = f
        .post_json(
            "/api/totp/reenroll",
            &json!({ "password": "not the password at all" }),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(f.audit_events().contains(&"totp_reset".to_owned()));
    let r = f
        .post_json(
            "/api/totp/reenroll",
            &json!({ "password": PASSWORD }),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let new = TotpSecret::from_base32(r.json()["secret"].as_str().unwrap()).unwrap();
    // Until confirmed, the old secret still logs in.
    let step = unix_now() / totp::PERIOD;
    let r = f
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": code(&new, step) }),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_codes = r.json()["recovery_codes"].as_array().unwrap().len();
    assert_eq!(new_codes, totp::RECOVERY_CODES);
    // The move is audited as a change of the second factor: the refusal
    // and the move, beside the one first enrolment.
    let events = f.audit_events();
    let count = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!((count("totp_enrolled"), count("totp_reset")), (1, 2));
    // The old phone and the old recovery codes are refused; the new ones work.
    let r = f.login(OWNER, PASSWORD, Some(&code(&old, step + 1))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.login(OWNER, PASSWORD, Some(&old_codes[0])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    f.login(OWNER, PASSWORD, Some(&code(&new, step + 1)))
        .await
        .browser();
}
