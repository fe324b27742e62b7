//! The voice relay, end to end on a real daemon: the owner sets up the
//! dashboard with two-factor, enables the relay and registers a client over
//! HTTPS; the test then plays the assistant over plain HTTP on loopback
//! (as the owner's tunnel would), while simulated devices obey.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use hearth_tests::{find_canaries, find_in_bytes};

use crate::harness::{Daemon, Device, Owner, set_up_owner, start_device, text};
use crate::http::{Reply, Target, form, query_param};

const LIMIT: Duration = Duration::from_secs(15);
const REDIRECT: &str = "https://assistant.invalid/link/cb";
const PASSWORD: &str = "a long relay test passphrase";
const OWNER: &str = "owner@home.invalid";

/// Secrets the relay must never show: per device, what it must not leak.
const LEAKS: [&str; 9] = [
    "Betty's lamp",
    "Betty's room",
    "CamPro X9",
    "9.9.9-leaky",
    "192.168.77.12",
    "BettyNet",
    "aa:bb:cc:00:11:22",
    "Front door camera",
    "tasmota",
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Home {
    daemon: Daemon,
    /// The owner on the dashboard: its session, two-factor and recovery
    /// codes.
    owner: Owner,
    relay: Target,
    lamp: Device,
    hall: Device,
    spare: Device,
    camera: Device,
    /// The client the next consent and token requests use: one of the two
    /// below.
    client_id: String,
    client_secret: String,
    /// The registered Alexa and Google clients: (id, secret).
    clients: HashMap<&'static str, (String, String)>,
    /// Every relay answer, for the leak check.
    seen: Vec<String>,
    /// Every JSON answer of `/alexa`, for Amazon's schema rules.
    alexa_answers: Vec<Value>,
    /// Every 200 answer of `/google`, with the intent it answered, for
    /// Google's typings.
    google_answers: Vec<(String, Value)>,
    /// The voice names of the lamp, the hall light and the spare lamp.
    voice: [String; 3],
}

impl Home {
    fn new() -> Home {
        const RELAY: &str = "[relay]\nlisten = \"127.0.0.1:0\"\n";
        let daemon = Daemon::start_with(RELAY);
        let mut lamp = daemon.add_device("tasmota", "bulb", "Betty's lamp", "Betty's room");
        let mut hall = daemon.add_device("generic", "bulb", "Hall light", "Hall");
        let mut spare = daemon.add_device("generic", "bulb", "Spare lamp", "Attic");
        let mut camera = daemon.add_device("generic", "camera", "Front door camera", "Porch");
        for (d, name) in [
            (&lamp, "reading lamp"),
            (&hall, "ceiling light"),
            (&spare, "guest lamp"),
        ] {
            daemon.cli_json(&["devices", "expose", d.id(), "--voice", "on", "--voice-name", name]);
        }
        // A camera is never exposed to voice assistants.
        let out = daemon.cli(&[
            "devices",
            "expose",
            camera.id(),
            "--voice",
            "on",
            "--voice-name",
            "door camera",
        ]);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{}",
            crate::harness::text(&out.stderr)
        );
        assert!(crate::harness::text(&out.stderr).contains("never exposed to voice"));
        // What discovery would have learnt about the lamp, written into the
        // store while the daemon is stopped: the relay must never show it.
        let home = daemon.stop_keeping_home();
        {
            let dir = hearth::store::DataDir::new(home.data_dir());
            let mut store = hearth::store::open_or_init(&dir, None).unwrap();
            let id = hearth::store::DeviceId::parse(lamp.id()).unwrap();
            let mut f = store.device(&id).unwrap().unwrap().fields;
            f.model = Some("CamPro X9".into());
            f.firmware = Some("9.9.9-leaky".into());
            f.addresses = vec!["192.168.77.12".parse().unwrap()];
            f.ssid = Some("BettyNet".into());
            f.mac = Some("aa:bb:cc:00:11:22".into());
            store.update_device(&id, &f).unwrap();
        }
        let daemon = Daemon::start_in_with(home, RELAY);
        let port = daemon.tls_port();
        for d in [&mut lamp, &mut hall, &mut spare, &mut camera] {
            d.0["mqtt"]["port"] = port.into();
        }
        let web = Target::tls(daemon.web_port(), &daemon.ca_cert());

        // The owner: setup code and password; two-factor comes below.
        let owner = set_up_owner(web, &daemon.home.data_dir(), OWNER, PASSWORD);
        let mut home = Home {
            daemon,
            relay: Target::plain(0),
            owner,
            lamp,
            hall,
            spare,
            camera,
            client_id: String::new(),
            client_secret: String::new(),
            clients: HashMap::new(),
            alexa_answers: Vec::new(),
            google_answers: Vec::new(),
            voice: ["reading lamp".into(), "ceiling light".into(), "guest lamp".into()],
            seen: Vec::new(),
        };
        // Before two-factor, the relay cannot be enabled, through either
        // door: the dashboard answers 400, the CLI exits 77 (EX_NOPERM),
        // each saying what to do.
        let r = home.api("POST", "/api/relay/enable", None);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("two-factor"));
        let out = home.daemon.cli(&["relay", "enable"]);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(77), "{said}");
        assert!(
            said.contains("turn on two-factor authentication in the dashboard first"),
            "{said}"
        );
        assert_eq!(home.daemon.cli_json(&["relay", "status"])["enabled"], false);
        home.owner.enable_two_factor();

        // A disabled relay does not listen.
        let r = home.api("GET", "/api/relay", None).json();
        assert_eq!(r["enabled"], false);
        assert!(r["listening"].is_null());

        let r = home.api("POST", "/api/relay/enable", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let listening = r.json()["listening"].as_str().unwrap().to_owned();
        let port: u16 = listening.rsplit(':').next().unwrap().parse().unwrap();
        home.relay = Target::plain(port);

        // A client is for one assistant: its links answer only there.
        let r = home.api(
            "POST",
            "/api/relay/clients",
            Some(json!({ "name": "Test assistant", "assistant": "other", "redirect_uris": [REDIRECT] })),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        for assistant in ["alexa", "google"] {
            let r = home.api(
                "POST",
                "/api/relay/clients",
                Some(
                    json!({ "name": "Test assistant", "assistant": assistant, "redirect_uris": [REDIRECT] }),
                ),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            home.clients.insert(
                assistant,
                (
                    v["client_id"].as_str().unwrap().to_owned(),
                    v["client_secret"].as_str().unwrap().to_owned(),
                ),
            );
        }
        home.client("alexa");
        home
    }

    /// Consents and tokens from now on are for `assistant`'s client.
    fn client(&mut self, assistant: &str) {
        let (id, secret) = self.clients[assistant].clone();
        self.client_id = id;
        self.client_secret = secret;
    }

    /// The whole link for the current client: consent (with `second` as
    /// the two-factor code), then the code exchanged with PKCE. Returns the
    /// access and refresh tokens.
    fn link(&mut self, second: &str, devices: &[&str], actions: &[&str]) -> (String, String) {
        let (verifier, challenge) = pkce();
        let location = self.consent(second, devices, actions, Some(&challenge));
        let code = query_param(&location, "code").unwrap();
        let r = self.token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ]);
        assert_eq!(r.status, 200, "{}", r.text());
        let t = r.json();
        (
            t["access_token"].as_str().unwrap().to_owned(),
            t["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Checks every Alexa answer this home received against
    /// tests/fixtures/alexa (Amazon's rules, python-jsonschema), and every
    /// Google answer, if it received any, against Google's published
    /// typings (tsc --strict).
    fn check_answers(&self) {
        assert!(
            !self.alexa_answers.is_empty() || !self.google_answers.is_empty(),
            "no answer to check"
        );
        if !self.alexa_answers.is_empty() {
            crate::relay_tools::check_alexa(
                &self.alexa_answers,
                &self.daemon.home.path("alexa-answers.json"),
            );
        }
        if !self.google_answers.is_empty() {
            crate::relay_tools::check_google(&self.google_answers, &self.daemon.home.path("google-answers"));
        }
    }

    fn totp_code(&self, steps_ahead: u64) -> String {
        self.owner.totp_code(steps_ahead)
    }

    /// A dashboard API call as the logged-in owner.
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.owner.api(method, path, body)
    }

    /// A relay call; its answer is kept for the leak check, and JSON
    /// answers of the assistants' routes for the schema checks.
    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let r = self.relay.send(method, path, headers, body);
        let answer = serde_json::from_slice::<Value>(&r.body).ok();
        match (method, path, answer) {
            ("POST", "/alexa", Some(a)) => self.alexa_answers.push(a),
            ("POST", "/google", Some(a)) if r.status == 200 => {
                let intent = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|b| b["inputs"][0]["intent"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.google_answers.push((intent, a));
            }
            _ => {}
        }
        let mut all = r.text();
        for (k, v) in &r.headers {
            all.push_str(&format!("\n{k}: {v}"));
        }
        self.seen.push(all);
        r
    }

    fn authorize_query(&self, redirect: &str, state: &str, challenge: Option<&str>) -> String {
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect),
            ("state", state),
        ];
        if let Some(c) = challenge {
            q.push(("code_challenge", c));
            q.push(("code_challenge_method", "S256"));
        }
        format!("/oauth/authorize?{}", String::from_utf8(form(&q)).unwrap())
    }

    /// The whole consent: the login page, the login (with `second` as the
    /// two-factor code), the consent page, and the choice. Returns the
    /// redirect's Location.
    fn consent(
        &mut self,
        second: &str,
        devices: &[&str],
        actions: &[&str],
        challenge: Option<&str>,
    ) -> String {
        let query = self.authorize_query(REDIRECT, "st-123", challenge);
        let page = self.call("GET", &query, &[], b"");
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.text().contains("relay-login"));
        let q = query.split_once('?').unwrap().1.to_owned();
        let mut pairs: Vec<(String, String)> = q
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), query_param(&format!("?{k}={v}"), k).unwrap())
            })
            .collect();
        pairs.push(("step".into(), "login".into()));
        pairs.push(("username".into(), OWNER.into()));
        pairs.push(("password".into(), PASSWORD.into()));
        pairs.push(("code".into(), second.into()));
        let body: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let page = self.call(
            "POST",
            "/oauth/authorize",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form(&body),
        );
        assert_eq!(page.status, 200, "{}", page.text());
        let html = page.text();
        // Offered: the lights, by voice name (the spare lamp until it is
        // forgotten); never the camera.
        let spare_known = self
            .daemon
            .cli_json(&["devices", "list"])
            .to_string()
            .contains(self.spare.id());
        for (name, offered) in [
            (self.voice[0].as_str(), true),
            (self.voice[1].as_str(), true),
            (self.voice[2].as_str(), spare_known),
        ] {
            assert_eq!(html.contains(name), offered, "{name} offered: {html}");
        }
        assert!(!html.contains(self.camera.id()), "a camera was offered");
        assert!(!html.contains("door camera"));
        let ticket = html
            .split("name=\"ticket\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        let mut body = vec![
            ("step", "consent"),
            ("ticket", ticket.as_str()),
            ("decision", "allow"),
        ];
        for d in devices {
            body.push(("device", d));
        }
        for a in actions {
            body.push(("action", a));
        }
        let r = self.call(
            "POST",
            "/oauth/authorize",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form(&body),
        );
        assert_eq!(r.status, 302, "{}", r.text());
        r.header("location").unwrap().to_owned()
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.client_id, self.client_secret);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }

    fn token(&mut self, pairs: &[(&str, &str)]) -> Reply {
        let auth = self.basic();
        self.call(
            "POST",
            "/oauth/token",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &auth),
            ],
            &form(pairs),
        )
    }

    fn alexa(
        &mut self,
        namespace: &str,
        name: &str,
        token: &str,
        endpoint: Option<&str>,
        payload: Value,
    ) -> Value {
        let mut d = json!({
            "directive": {
                "header": { "namespace": namespace, "name": name, "payloadVersion": "3", "messageId": "m-1", "correlationToken": "corr-1" },
                "payload": payload,
            }
        });
        match endpoint {
            Some(id) => {
                d["directive"]["endpoint"] = json!({ "scope": { "type": "BearerToken", "token": token }, "endpointId": id, "cookie": {} })
            }
            None => d["directive"]["payload"]["scope"] = json!({ "type": "BearerToken", "token": token }),
        }
        let r = self.call(
            "POST",
            "/alexa",
            &[("Content-Type", "application/json")],
            d.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    fn google(&mut self, token: &str, input: Value) -> Reply {
        let auth = format!("Bearer {token}");
        let body = json!({ "requestId": "req-1", "inputs": [input] });
        self.call(
            "POST",
            "/google",
            &[("Content-Type", "application/json"), ("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
    }

    fn leak_check(&self) {
        for answer in &self.seen {
            for secret in LEAKS {
                assert!(
                    !answer.to_lowercase().contains(&secret.to_lowercase()),
                    "a relay answer carries {secret:?}: {answer}"
                );
            }
            assert!(
                !answer.contains(OWNER),
                "a relay answer carries the owner's e-mail"
            );
        }
    }
}

fn pkce() -> (String, String) {
    let verifier = "relay-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz".to_owned();
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (
        verifier,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
    )
}

fn said(rt: &tokio::runtime::Runtime, lines: &mut mpsc::UnboundedReceiver<String>, want: &str) {
    rt.block_on(async {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, lines.recv()).await {
                Ok(Some(l)) if l == want => return,
                Ok(Some(_)) => {}
                _ => panic!("the device never said {want:?}"),
            }
        }
    })
}

fn endpoint_ids(discover: &Value) -> Vec<String> {
    let mut ids: Vec<String> = discover["event"]["payload"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpointId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn property<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["context"]["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["value"])
}

#[test]
fn an_assistant_links_sees_only_its_devices_commands_them_and_loses_them() {
    let rt = rt();
    let mut home = Home::new();
    let (mut lamp_said, _l) = start_device(&rt, &home.lamp);
    let (mut hall_said, _h) = start_device(&rt, &home.hall);
    said(&rt, &mut lamp_said, "connected");
    said(&rt, &mut hall_said, "connected");

    // Link with PKCE and TOTP, choosing the lamp and the hall light, and
    // trying to slip the camera in.
    let (verifier, challenge) = pkce();
    let code_now = home.totp_code(1);
    let (lamp_id, hall_id, cam_id) = (
        home.lamp.id().to_owned(),
        home.hall.id().to_owned(),
        home.camera.id().to_owned(),
    );
    let location = home.consent(
        &code_now,
        &[&lamp_id, &hall_id, &cam_id],
        &["power", "brightness"],
        Some(&challenge),
    );
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-123"));
    let code = query_param(&location, "code").unwrap();
    let started = Instant::now();
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "token response took {:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.len() >= 43 && refresh.len() >= 43);

    // Alexa discovery: exactly the chosen devices, under voice names.
    let d = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    let mut want = vec![lamp_id.clone(), hall_id.clone()];
    want.sort();
    assert_eq!(endpoint_ids(&d), want, "{d}");
    let endpoints = d["event"]["payload"]["endpoints"].as_array().unwrap();
    let names: HashMap<&str, &str> = endpoints
        .iter()
        .map(|e| {
            (
                e["endpointId"].as_str().unwrap(),
                e["friendlyName"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names[lamp_id.as_str()], "reading lamp");
    assert_eq!(names[hall_id.as_str()], "ceiling light");
    for e in endpoints {
        assert_eq!(e["manufacturerName"], "hearth");
        let caps: Vec<&str> = e["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["interface"].as_str().unwrap())
            .collect();
        assert!(caps.contains(&"Alexa.PowerController"));
        assert!(caps.contains(&"Alexa.BrightnessController"));
        assert!(caps.contains(&"Alexa.EndpointHealth"));
        assert!(
            !caps.contains(&"Alexa.ColorTemperatureController"),
            "colour temperature was not granted"
        );
    }

    // TurnOn reaches the Tasmota lamp in its own scheme; the answer says ON.
    let r = home.alexa(
        "Alexa.PowerController",
        "TurnOn",
        &access,
        Some(&lamp_id),
        json!({}),
    );
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    assert_eq!(r["event"]["header"]["correlationToken"], "corr-1");
    said(&rt, &mut lamp_said, "state ON");
    assert_eq!(property(&r, "powerState"), Some(&json!("ON")), "{r}");
    // ReportState and QUERY reflect it.
    let r = home.alexa("Alexa", "ReportState", &access, Some(&lamp_id), json!({}));
    assert_eq!(r["event"]["header"]["name"], "StateReport");
    assert_eq!(property(&r, "powerState"), Some(&json!("ON")));
    assert_eq!(property(&r, "connectivity"), Some(&json!({ "value": "OK" })));
    // Brightness: set, then adjusted.
    let r = home.alexa(
        "Alexa.BrightnessController",
        "SetBrightness",
        &access,
        Some(&hall_id),
        json!({ "brightness": 40 }),
    );
    assert_eq!(property(&r, "brightness"), Some(&json!(40)), "{r}");
    said(&rt, &mut hall_said, "brightness 40");
    let r = home.alexa(
        "Alexa.BrightnessController",
        "AdjustBrightness",
        &access,
        Some(&hall_id),
        json!({ "brightnessDelta": -15 }),
    );
    assert_eq!(property(&r, "brightness"), Some(&json!(25)), "{r}");
    let r = home.alexa(
        "Alexa.BrightnessController",
        "SetBrightness",
        &access,
        Some(&hall_id),
        json!({ "brightness": 140 }),
    );
    assert_eq!(r["event"]["payload"]["type"], "VALUE_OUT_OF_RANGE", "{r}");
    // Colour temperature was not granted.
    let r = home.alexa(
        "Alexa.ColorTemperatureController",
        "SetColorTemperature",
        &access,
        Some(&lamp_id),
        json!({ "colorTemperatureInKelvin": 3000 }),
    );
    assert_eq!(r["event"]["header"]["name"], "ErrorResponse", "{r}");
    // AcceptGrant is acknowledged.
    let mut g = json!({ "grant": { "type": "OAuth2.AuthorizationCode", "code": "x" } });
    g["grantee"] = json!({ "type": "BearerToken", "token": access });
    let r = home.call(
        "POST",
        "/alexa",
        &[],
        json!({ "directive": { "header": { "namespace": "Alexa.Authorization", "name": "AcceptGrant", "payloadVersion": "3", "messageId": "m" }, "payload": g } })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.json()["event"]["header"]["name"], "AcceptGrant.Response");

    // Google links through its own client; each link answers only its
    // assistant, and the other's token is refused like an invalid one.
    home.client("google");
    let second = home.owner.recovery[0].clone();
    let (gaccess, grefresh) = home.link(&second, &[&lamp_id, &hall_id, &cam_id], &["power", "brightness"]);
    let r = home.google(&access, json!({ "intent": "action.devices.SYNC" }));
    assert_eq!(r.status, 401, "an Alexa token on /google: {}", r.text());
    assert_eq!(r.json()["error"], "invalid_token");
    for (namespace, name, endpoint) in [
        ("Alexa.Discovery", "Discover", None),
        ("Alexa.PowerController", "TurnOn", Some(lamp_id.as_str())),
    ] {
        let r = home.alexa(namespace, name, &gaccess, endpoint, json!({}));
        assert_eq!(r["event"]["header"]["name"], "ErrorResponse", "{r}");
        assert_eq!(
            r["event"]["payload"]["type"], "INVALID_AUTHORIZATION_CREDENTIAL",
            "a Google token on /alexa: {r}"
        );
    }

    // Google: SYNC with an opaque agentUserId, QUERY, EXECUTE.
    let r = home.google(&gaccess, json!({ "intent": "action.devices.SYNC" }));
    assert_eq!(r.status, 200, "{}", r.text());
    let sync = r.json();
    // The name is the voice name alone, in each of the three fields
    // Google's typings require.
    for d in sync["payload"]["devices"].as_array().unwrap() {
        let voice = names[d["id"].as_str().unwrap()];
        assert_eq!(
            d["name"],
            json!({ "defaultNames": [voice], "name": voice, "nicknames": [voice] }),
            "{sync}"
        );
    }
    let agent = sync["payload"]["agentUserId"].as_str().unwrap().to_owned();
    assert_eq!(agent.len(), 32);
    assert!(!agent.contains('@'));
    let mut ids: Vec<&str> = sync["payload"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    let r = home.google(
        &gaccess,
        json!({ "intent": "action.devices.QUERY", "payload": { "devices": [{ "id": lamp_id }, { "id": cam_id }] } }),
    );
    let q = r.json();
    assert_eq!(q["payload"]["devices"][&lamp_id]["on"], true, "{q}");
    assert_eq!(q["payload"]["devices"][&lamp_id]["status"], "SUCCESS");
    assert_eq!(q["payload"]["devices"][&cam_id]["errorCode"], "deviceNotFound");
    let r = home.google(
        &gaccess,
        json!({ "intent": "action.devices.EXECUTE", "payload": { "commands": [{
            "devices": [{ "id": lamp_id }, { "id": cam_id }],
            "execution": [{ "command": "action.devices.commands.OnOff", "params": { "on": false } }]
        }] } }),
    );
    let e = r.json();
    let results = e["payload"]["commands"].as_array().unwrap();
    let of = |id: &str| results.iter().find(|c| c["ids"][0] == id).unwrap().clone();
    assert_eq!(of(&lamp_id)["status"], "SUCCESS", "{e}");
    assert_eq!(of(&lamp_id)["states"]["on"], false);
    assert_eq!(of(&cam_id)["errorCode"], "deviceNotFound");
    said(&rt, &mut lamp_said, "state OFF");

    // Un-exposing the hall light takes it out of the link at once.
    home.daemon
        .cli_json(&["devices", "expose", &hall_id, "--voice", "off"]);
    let d = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    assert_eq!(endpoint_ids(&d), vec![lamp_id.clone()]);
    let r = home.alexa(
        "Alexa.PowerController",
        "TurnOn",
        &access,
        Some(&hall_id),
        json!({}),
    );
    assert_eq!(r["event"]["payload"]["type"], "NO_SUCH_ENDPOINT");
    // Re-exposing does not bring it back: the owner chose again for that.
    home.daemon
        .cli_json(&["devices", "expose", &hall_id, "--voice", "on"]);
    let d = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    assert_eq!(endpoint_ids(&d), vec![lamp_id.clone()]);

    // The lamp goes offline: ENDPOINT_UNREACHABLE and deviceOffline.
    drop(_l);
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = home.alexa("Alexa", "ReportState", &access, Some(&lamp_id), json!({}));
        if r["event"]["payload"]["type"] == "ENDPOINT_UNREACHABLE" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lamp never showed as unreachable: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = home.google(
        &gaccess,
        json!({ "intent": "action.devices.EXECUTE", "payload": { "commands": [{
            "devices": [{ "id": lamp_id }],
            "execution": [{ "command": "action.devices.commands.OnOff", "params": { "on": true } }]
        }] } }),
    );
    assert_eq!(r.json()["payload"]["commands"][0]["errorCode"], "deviceOffline");

    // Every call is counted against its link and audited without secrets.
    let v = home.api("GET", "/api/relay", None).json();
    let links = v["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{v}");
    let link = links.iter().find(|l| l["id"] == agent.as_str()).unwrap();
    let alexa_link = links.iter().find(|l| l["id"] != agent.as_str()).unwrap();
    assert!(link["calls"].as_u64().unwrap() >= 4, "{v}");
    assert!(alexa_link["calls"].as_u64().unwrap() >= 11, "{v}");
    let link_id = link["id"].as_str().unwrap().to_owned();
    let alexa_link_id = alexa_link["id"].as_str().unwrap().to_owned();
    let privacy = home.api("GET", "/api/privacy", None).json();
    assert!(privacy.to_string().contains(&link_id));
    let audit = home.api("GET", "/api/audit", None).text();
    for token in [&access, &refresh, &gaccess, &grefresh] {
        assert!(!audit.contains(token.as_str()));
    }

    // Every Alexa answer so far passes Amazon's schema rules, and every
    // Google answer Google's typings.
    for kind in [
        "Discover.Response",
        "Response",
        "StateReport",
        "ErrorResponse",
        "AcceptGrant.Response",
    ] {
        assert!(
            home.alexa_answers
                .iter()
                .any(|a| a["event"]["header"]["name"] == kind),
            "no {kind} to check"
        );
    }
    for intent in ["SYNC", "QUERY", "EXECUTE"] {
        assert!(
            home.google_answers
                .iter()
                .any(|(i, _)| i == &format!("action.devices.{intent}")),
            "no {intent} answer to check"
        );
    }
    home.check_answers();

    // Refresh rotates; the retried old token within the grace window still
    // works once; reusing it after the new one was used revokes the link.
    let refresh = grefresh;
    let r = home.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let t2 = r.json();
    let (access2, refresh2) = (
        t2["access_token"].as_str().unwrap().to_owned(),
        t2["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_ne!(refresh2, refresh);
    let r = home.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(r.status, 200, "a retry inside the grace window: {}", r.text());
    let t3 = r.json();
    let refresh3 = t3["refresh_token"].as_str().unwrap().to_owned();
    let access3 = t3["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        home.google(&access2, json!({ "intent": "action.devices.SYNC" }))
            .status,
        401,
        "the lost pair is void"
    );
    assert_eq!(
        home.google(&access3, json!({ "intent": "action.devices.SYNC" }))
            .status,
        200
    );
    let r = home.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh3)]);
    assert_eq!(r.status, 200);
    let access4 = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = home.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    for token in [&gaccess, &access3, &access4] {
        assert_eq!(
            home.google(token, json!({ "intent": "action.devices.SYNC" }))
                .status,
            401
        );
    }
    let v = home.api("GET", "/api/relay", None).json();
    let left: Vec<&Value> = v["links"].as_array().unwrap().iter().map(|l| &l["id"]).collect();
    assert_eq!(
        left,
        vec![&json!(alexa_link_id)],
        "reuse revoked the Google link only: {v}"
    );
    let audit = home.api("GET", "/api/audit", None).text();
    assert!(audit.contains("a refresh token was used again"));

    home.leak_check();

    // The calls were audited once per minute and link, the minute still
    // running when hearth stopped included, and without a token.
    let dir = home.daemon.stop_keeping_home();
    let store = hearth::store::open_or_init(&hearth::store::DataDir::new(dir.data_dir()), None).unwrap();
    let entries = store.audit(10_000).unwrap();
    let calls: Vec<_> = entries.iter().filter(|e| e.event == "relay_calls").collect();
    assert!(!calls.is_empty() && calls.len() <= 6, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|e| e.actor == format!("link {link_id}") || e.actor == format!("link {alexa_link_id}")),
        "{calls:?}"
    );
    let total: u64 = calls
        .iter()
        .map(|e| {
            let n = e.detail.split(": ").nth(1).unwrap().split(' ').next().unwrap();
            n.parse::<u64>().unwrap()
        })
        .sum();
    assert!(total >= 15, "{calls:?}");
    assert!(calls.iter().any(|e| e.detail.contains("EXECUTE")), "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|e| !e.detail.contains(&access) && !e.detail.contains(&refresh)),
        "{calls:?}"
    );
    assert!(store.verify_audit().unwrap().verified());
}

#[test]
fn the_relay_refuses_what_it_must() {
    let rt = rt();
    let mut home = Home::new();
    let (mut lamp_said, _l) = start_device(&rt, &home.lamp);
    said(&rt, &mut lamp_said, "connected");
    let (verifier, challenge) = pkce();
    let (lamp_id, spare_id, cam_id) = (
        home.lamp.id().to_owned(),
        home.spare.id().to_owned(),
        home.camera.id().to_owned(),
    );

    // Only five routes; anything else is a bare 404.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/admin"),
        ("GET", "/api/devices"),
        ("GET", "/oauth/token"),
        ("PUT", "/alexa"),
        ("GET", "/google"),
        ("DELETE", "/health"),
        ("GET", "/ca.pem"),
    ] {
        let r = home.call(method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(r.body.is_empty(), "{method} {path} has a body");
        assert!(r.header("server").is_none());
    }
    let r = home.call("GET", "/health", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0));

    // The authorize page: unknown client and wrong redirect URI are shown,
    // never redirected to.
    let q = home.authorize_query("https://evil.invalid/cb", "s", Some(&challenge));
    let r = home.call("GET", &q, &[], b"");
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    let q = home
        .authorize_query(REDIRECT, "s", Some(&challenge))
        .replace(&home.client_id.clone(), &"0".repeat(32));
    let r = home.call("GET", &q, &[], b"");
    assert_eq!(r.status, 400);
    // plain PKCE is refused, back at the redirect URI.
    let q = home.authorize_query(REDIRECT, "s", None) + "&code_challenge=abc&code_challenge_method=plain";
    let r = home.call("GET", &q, &[], b"");
    assert_eq!(r.status, 302);
    assert_eq!(
        query_param(r.header("location").unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
    // A wrong password or code is refused on the page.
    let mut body = home
        .authorize_query(REDIRECT, "s", None)
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    body.push_str("&step=login&username=owner%40home.invalid&password=wrong-password-here&code=000000");
    let r = home.call("POST", "/oauth/authorize", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    assert!(r.text().contains("wrong"));

    // A code for the spare lamp (a recovery code as the second factor).
    let second = home.owner.recovery[0].clone();
    let location = home.consent(&second, &[&spare_id], &["power"], Some(&challenge));
    let code = query_param(&location, "code").unwrap();
    // Wrong redirect URI, then a PKCE mismatch: each refused, and a failed
    // exchange burns the code.
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "https://assistant.invalid/other"),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(r.status, 400, "a code that failed once is burnt");
    let second = home.owner.recovery[1].clone();
    let location = home.consent(&second, &[&spare_id], &["power"], Some(&challenge));
    let code = query_param(&location, "code").unwrap();
    let wrong_verifier = "x".repeat(50);
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &wrong_verifier),
    ]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    // A wrong client secret.
    let second = home.owner.recovery[2].clone();
    let location = home.consent(&second, &[&lamp_id, &spare_id], &["power"], Some(&challenge));
    let code = query_param(&location, "code").unwrap();
    let secret = std::mem::replace(&mut home.client_secret, "0".repeat(64));
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    home.client_secret = secret;
    // The right exchange, then a reuse of the code: refused, and the link
    // it made is revoked.
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    assert_eq!(r["event"]["header"]["name"], "Discover.Response", "{r}");
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(r.status, 400);
    let r = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    assert_eq!(
        r["event"]["payload"]["type"], "INVALID_AUTHORIZATION_CREDENTIAL",
        "code reuse revoked the link: {r}"
    );

    // A fresh link for the directive checks.
    let second = home.owner.recovery[3].clone();
    let location = home.consent(
        &second,
        &[&lamp_id, &spare_id],
        &["power", "brightness"],
        Some(&challenge),
    );
    let code = query_param(&location, "code").unwrap();
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();

    // A table of refusals, each with the shape it must have.
    let bad_token = "f".repeat(64);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a bad token",
            json!(["Alexa.PowerController", "TurnOn", bad_token, lamp_id]),
            "INVALID_AUTHORIZATION_CREDENTIAL",
        ),
        (
            "a camera id",
            json!(["Alexa.PowerController", "TurnOn", access, cam_id]),
            "NO_SUCH_ENDPOINT",
        ),
        (
            "an unknown id",
            json!(["Alexa.PowerController", "TurnOn", access, "0".repeat(32)]),
            "NO_SUCH_ENDPOINT",
        ),
        (
            "an unknown directive",
            json!(["Alexa.LockController", "Lock", access, lamp_id]),
            "INVALID_DIRECTIVE",
        ),
    ];
    for (what, c, want) in cases {
        let r = home.alexa(
            c[0].as_str().unwrap(),
            c[1].as_str().unwrap(),
            c[2].as_str().unwrap(),
            c[3].as_str(),
            json!({}),
        );
        assert_eq!(r["event"]["header"]["name"], "ErrorResponse", "{what}: {r}");
        assert_eq!(r["event"]["payload"]["type"], want, "{what}: {r}");
    }
    assert_eq!(
        home.google(&bad_token, json!({ "intent": "action.devices.SYNC" }))
            .status,
        401
    );
    let r = home.call("POST", "/google", &[("Authorization", "Bearer")], b"{}");
    assert_eq!(r.status, 401);
    // Malformed and oversized bodies.
    let r = home.call("POST", "/alexa", &[], b"{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["event"]["payload"]["type"], "INVALID_DIRECTIVE");
    let big = vec![b'x'; 64 * 1024];
    for path in ["/alexa", "/google", "/oauth/token", "/oauth/authorize"] {
        let auth = format!("Bearer {access}");
        let r = home.call("POST", path, &[("Authorization", &auth)], &big);
        assert_eq!(r.status, 413, "{path}");
    }

    // A forgotten device: gone from the link in the same write.
    home.daemon.cli_json(&["devices", "forget", &spare_id]);
    let r = home.alexa(
        "Alexa.PowerController",
        "TurnOn",
        &access,
        Some(&spare_id),
        json!({}),
    );
    assert_eq!(r["event"]["payload"]["type"], "NO_SUCH_ENDPOINT");
    let r = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    assert_eq!(endpoint_ids(&r), vec![lamp_id.clone()], "{r}");

    // A link revoked on the dashboard stops at once; DISCONNECT revokes too.
    let v = home.api("GET", "/api/relay", None).json();
    let link = v["links"][0]["id"].as_str().unwrap().to_owned();
    let r = home.api("DELETE", &format!("/api/relay/links/{link}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = home.alexa("Alexa.Discovery", "Discover", &access, None, json!({}));
    assert_eq!(r["event"]["payload"]["type"], "INVALID_AUTHORIZATION_CREDENTIAL");

    // The per-token rate limit answers 429 without touching the device.
    home.client("google");
    let second = home.owner.recovery[4].clone();
    let (access, _) = home.link(&second, &[&lamp_id], &["power"]);
    let statuses: Vec<u16> = (0..40)
        .map(|_| {
            home.google(&access, json!({ "intent": "action.devices.SYNC" }))
                .status
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let r = home.google(&access, json!({ "intent": "action.devices.DISCONNECT" }));
    // Rate-limited or not, DISCONNECT is eventually honoured.
    if r.status == 429 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            home.google(&access, json!({ "intent": "action.devices.DISCONNECT" }))
                .status,
            200
        );
    }
    assert_eq!(
        home.google(&access, json!({ "intent": "action.devices.SYNC" }))
            .status,
        401
    );

    // Disabled: nothing listens.
    let r = home.api("POST", "/api/relay/disable", None);
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + LIMIT;
    while home.relay.try_send("GET", "/health", &[], b"").is_ok() {
        assert!(Instant::now() < deadline, "the relay still listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    home.leak_check();
    home.check_answers();
}

#[test]
fn an_authorization_code_dies_after_sixty_seconds() {
    let mut home = Home::new();
    let (verifier, challenge) = pkce();
    let spare = home.spare.id().to_owned();
    let second = home.owner.recovery[0].clone();
    let location = home.consent(&second, &[&spare], &["power"], Some(&challenge));
    let code = query_param(&location, "code").unwrap();
    std::thread::sleep(Duration::from_secs(61));
    let r = home.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
}

/// The port of the relay's listener, from `relay status --json` or
/// `relay enable --json`.
fn listening_port(v: &Value) -> u16 {
    let listening = v["listening"].as_str().expect("the relay listens");
    listening.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_cli_turns_the_listener_on_and_off_and_a_restart_keeps_it() {
    const RELAY: &str = "[relay]\nlisten = \"127.0.0.1:0\"\n";
    let daemon = Daemon::start_with(RELAY);
    let v = daemon.cli_json(&["relay", "status"]);
    assert_eq!(
        (v["enabled"].clone(), v["listening"].clone()),
        (json!(false), Value::Null)
    );
    // The CLI's door keeps the dashboard's rule: two-factor first.
    let out = daemon.cli(&["relay", "enable"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("two-factor"), "{}", text(&out.stderr));
    daemon.owner_with_two_factor(OWNER, PASSWORD);
    let v = daemon.cli_json(&["relay", "enable"]);
    assert_eq!(v["enabled"], true);
    let port = listening_port(&v);
    let r = Target::plain(port).send("GET", "/health", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Enabled survives a restart (on a new free port here).
    let home = daemon.stop_keeping_home();
    let daemon = Daemon::start_in_with(home, RELAY);
    let v = daemon.cli_json(&["relay", "status"]);
    assert_eq!(v["enabled"], true);
    let port = listening_port(&v);
    assert_eq!(Target::plain(port).send("GET", "/health", &[], b"").status, 200);

    let v = daemon.cli_json(&["relay", "disable"]);
    assert_eq!(
        (v["enabled"].clone(), v["listening"].clone()),
        (json!(false), Value::Null)
    );
    let deadline = Instant::now() + LIMIT;
    while Target::plain(port).try_send("GET", "/health", &[], b"").is_ok() {
        assert!(Instant::now() < deadline, "the relay still listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = daemon.cli(&["relay", "status"]);
    assert!(crate::harness::text(&out.stdout).contains("off"));
}

/// Whether MQTT credentials are accepted, over TLS.
fn mqtt_accepts(
    rt: &tokio::runtime::Runtime,
    port: u16,
    ca: &std::path::Path,
    user: &str,
    password: &str,
) -> bool {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut opts = MqttOptions::new(format!("probe-{}", std::process::id()), "127.0.0.1", port);
    opts.set_credentials(user, password);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(std::sync::Arc::new(tls))));
    let (_client, mut events) = AsyncClient::new(opts, 8);
    rt.block_on(async {
        tokio::time::timeout(LIMIT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false)
    })
}

#[test]
fn lockdown_revokes_sessions_links_and_home_assistant_while_local_control_keeps_working() {
    let rt = rt();
    let mut home = Home::new();
    let (mut lamp_said, _l) = start_device(&rt, &home.lamp);
    said(&rt, &mut lamp_said, "connected");
    let lamp_id = home.lamp.id().to_owned();
    home.client("google");
    let second = home.owner.recovery[0].clone();
    let (access, _) = home.link(&second, &[&lamp_id], &["power"]);
    assert_eq!(
        home.google(&access, json!({ "intent": "action.devices.SYNC" }))
            .status,
        200
    );
    let ha = home.daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let (ha_user, ha_password) = (
        ha["mqtt"]["username"].as_str().unwrap().to_owned(),
        ha["mqtt"]["password"].as_str().unwrap().to_owned(),
    );
    let (port, ca) = (home.daemon.tls_port(), home.daemon.ca_cert());
    assert!(mqtt_accepts(&rt, port, &ca, &ha_user, &ha_password));
    assert_eq!(home.api("GET", "/api/session", None).status, 200);

    // From the CLI: everything, the owner's sessions included.
    let report = home.daemon.cli_json(&["lockdown", "--require-new-password"]);
    assert_eq!(report["sessions_ended"], 1, "{report}");
    assert_eq!(report["new_password_required"], true);
    assert_eq!(report["relay_links_revoked"], 1);
    assert_eq!(report["homeassistant_password_revoked"], true);
    assert_eq!(home.api("GET", "/api/session", None).status, 401);
    assert_eq!(
        home.google(&access, json!({ "intent": "action.devices.SYNC" }))
            .status,
        401
    );
    assert!(
        !mqtt_accepts(&rt, port, &ca, &ha_user, &ha_password),
        "the old Home Assistant password still works"
    );
    // Local control keeps working: the lamp obeys.
    home.daemon.cli_json(&["devices", "set", &lamp_id, "on"]);
    said(&rt, &mut lamp_said, "state ON");

    // From the dashboard, keeping the caller's session, rotating devices.
    let origin = format!("https://{}", home.owner.web.host());
    let r = home.owner.web.send(
        "POST",
        "/api/login",
        &[("Origin", &origin), ("Content-Type", "application/json")],
        json!({ "username": OWNER, "password": PASSWORD, "code": home.owner.recovery[1] })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    home.owner.cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    home.owner.csrf = r.json()["csrf"].as_str().unwrap().to_owned();
    // The CLI required a new password: until it is chosen, this session
    // may do nothing else.
    assert_eq!(
        home.api("GET", "/api/session", None).json()["must_change_password"],
        true
    );
    let r = home.api("POST", "/api/lockdown", Some(json!({ "rotate_devices": true })));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = home.api(
        "POST",
        "/api/password",
        Some(json!({ "current": PASSWORD, "new": "a new password after the lockdown" })),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        home.api("GET", "/api/session", None).json()["must_change_password"],
        false
    );
    let r = home.api("POST", "/api/lockdown", Some(json!({ "rotate_devices": true })));
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(
        report["sessions_ended"], 0,
        "the caller's session is kept: {report}"
    );
    let rotated = report["devices_rotated"].as_array().unwrap();
    assert_eq!(rotated.len(), 4, "{report}");
    assert!(
        rotated
            .iter()
            .any(|p| p["id"] == lamp_id.as_str() && p["mqtt"]["password"] != home.lamp.0["mqtt"]["password"])
    );
    assert_eq!(home.api("GET", "/api/session", None).status, 200);
    // The lamp's old credential is cut off.
    rt.block_on(async {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, lamp_said.recv()).await {
                Ok(Some(l)) if l == "disconnected" || l == "refused" => return,
                Ok(Some(_)) => {}
                _ => panic!("the lamp kept its session after rotation"),
            }
        }
    });
    let audit = home.api("GET", "/api/audit", None).json();
    let lockdowns: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "lockdown")
        .collect();
    assert_eq!(lockdowns.len(), 2, "{audit}");
    assert!(
        lockdowns
            .iter()
            .any(|e| e["actor"] == "cli" && e["detail"].as_str().unwrap().contains("new password required")),
        "{audit}"
    );
    home.check_answers();
}

#[test]
fn the_privacy_report_counts_what_is_held_and_lists_the_open_listeners() {
    let daemon = Daemon::start_with("[relay]\nlisten = \"127.0.0.1:0\"\n");
    daemon.add_device("generic", "bulb", "Lamp A", "Hall");
    daemon.add_device("tasmota", "plug", "Plug B", "Hall");
    let r = daemon.cli_json(&["privacy", "report"]);
    let count = |what: &str| {
        r["held"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["what"].as_str().unwrap().starts_with(what))
            .unwrap_or_else(|| panic!("no {what} in {r}"))["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("Adopted devices"), 2);
    assert_eq!(count("Device MQTT passwords"), 2);
    assert_eq!(count("Owner accounts"), 0);
    assert!(!r.to_string().contains("Lamp A"), "the report names no device");
    let listener = |r: &Value, what: &str| {
        r["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["what"].as_str().unwrap().contains(what))
            .unwrap()["addresses"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listener(&r, "voice relay"), 0, "the relay is off");
    assert_eq!(listener(&r, "MQTT over TLS"), 1);
    assert!(r["retention"].as_array().unwrap().len() >= 5);
    daemon.owner_with_two_factor(OWNER, PASSWORD);
    daemon.cli_json(&["relay", "enable"]);
    let r = daemon.cli_json(&["privacy", "report"]);
    assert_eq!(listener(&r, "voice relay"), 1);
    let text = crate::harness::text(&daemon.cli(&["privacy", "report"]).stdout);
    assert!(
        text.contains("What hearth holds") && text.contains("Open listeners"),
        "{text}"
    );
}

/// The whole story, then a search for 20 canaries: devices renamed and
/// moved to canary rooms, exposed under canary voice names, linked to an
/// assistant that calls them, a backup written; then the data directory,
/// the backup and everything hearth logged are searched. Nothing may be
/// found, in UTF-8 or UTF-16.
#[test]
fn twenty_canaries_never_reach_the_disk_the_backup_or_the_log() {
    let rt = rt();
    let mut home = Home::new();
    let tag = hex::encode(
        &hearth::store::secret::random_token(128)
            .unwrap()
            .expose()
            .as_bytes()[..5],
    );
    let c = |what: &str| format!("Cnry{tag}{what}");
    let mut canaries = Vec::new();
    let devices = [
        home.lamp.clone(),
        home.hall.clone(),
        home.spare.clone(),
        home.camera.clone(),
    ];
    for (i, d) in devices.iter().enumerate() {
        let (name, room) = (c(&format!("name{i}")), c(&format!("room{i}")));
        let out = home
            .daemon
            .cli(&["devices", "rename", d.id(), "--nickname", &name, "--room", &room]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        canaries.extend([name, room]);
        canaries.push(d.password().to_owned());
    }
    for (i, d) in devices[..3].iter().enumerate() {
        let voice = c(&format!("voice{i}"));
        home.daemon.cli_json(&[
            "devices",
            "expose",
            d.id(),
            "--voice",
            "on",
            "--voice-name",
            &voice,
        ]);
        home.voice[i] = voice.clone();
        canaries.push(voice);
    }
    canaries.push(PASSWORD.to_owned());
    canaries.push(home.client_secret.clone());

    let (mut lamp_said, _l) = start_device(&rt, &home.lamp);
    said(&rt, &mut lamp_said, "connected");
    let code_now = home.totp_code(1);
    let lamp_id = home.lamp.id().to_owned();
    let (access, refresh) = home.link(&code_now, &[&lamp_id], &["power", "brightness"]);
    canaries.push(access.clone());
    canaries.push(refresh);
    let r = home.alexa(
        "Alexa.PowerController",
        "TurnOn",
        &access,
        Some(&lamp_id),
        json!({}),
    );
    assert!(r.to_string().contains("Response"), "{r}");
    said(&rt, &mut lamp_said, "state ON");
    // Google reaches the same voice name through a link of its own.
    home.client("google");
    let second = home.owner.recovery[0].clone();
    let (gaccess, _) = home.link(&second, &[&lamp_id], &["power"]);
    let sync = home.google(&gaccess, json!({ "intent": "action.devices.SYNC" }));
    assert_eq!(sync.status, 200);

    let pass = home.daemon.home.path("backup-pass");
    let passphrase = c("backup passphrase");
    std::fs::write(&pass, format!("{passphrase}\n")).unwrap();
    canaries.push(passphrase);
    let backup = home.daemon.home.path("canaries.hearthbackup");
    let out = home.daemon.cli(&[
        "backup",
        "create",
        "--out",
        backup.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(canaries.len(), 20, "{canaries:?}");

    // The metrics a scraper on this hub reads: counts that moved, and
    // no canary, no device id and no address.
    let scrape = home.owner.web.send("GET", "/metrics", &[], b"");
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    let metrics = scrape.text();
    for line in [
        "hearth_relay_calls_total 2",
        "hearth_devices{kind=\"bulb\",state=\"online\"} 1",
        "hearth_devices{kind=\"camera\",state=\"offline\"} 1",
        "hearth_mqtt_connections 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    let found = find_in_bytes(metrics.as_bytes(), &canaries);
    assert!(found.is_empty(), "found in /metrics: {found:?}");
    for d in &devices {
        assert!(!metrics.contains(d.id()), "a device id is in /metrics");
    }
    assert!(!metrics.contains("127.0.0.1"), "an address is in /metrics");

    // Searched while hearth runs (WAL and shared memory present), and
    // after it stopped.
    let running = find_canaries(&home.daemon.home.data_dir(), &canaries);
    assert!(running.is_empty(), "found while running: {running:?}");
    home.check_answers();
    let Home { daemon, .. } = home;
    let dir = daemon.stop_keeping_home();
    let log_running = std::fs::read_to_string(dir.path("daemon.log")).unwrap();
    let found = find_canaries(&dir.data_dir(), &canaries);
    assert!(found.is_empty(), "found in the data directory: {found:?}");
    let bytes = std::fs::read(&backup).unwrap();
    let found = find_in_bytes(&bytes, &canaries);
    assert!(found.is_empty(), "found in the backup: {found:?}");
    let found = find_in_bytes(log_running.as_bytes(), &canaries);
    assert!(found.is_empty(), "found in the log: {found:?}");
    assert!(log_running.contains("hearth running"), "the log was captured");
}

/// "Erase everything" from the dashboard: refused unconfirmed or without
/// the password and a code; then the keys go first, hearth stops, and the
/// data directory is left empty for a fresh start.
#[test]
fn erase_from_the_dashboard_needs_password_and_code_and_leaves_nothing() {
    let home = Home::new();
    let owner = "owner@home.invalid";
    let r = home.api(
        "POST",
        "/api/erase",
        Some(json!({ "confirm": "yes", "password": PASSWORD })),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = home.api(
        "POST",
        "/api/erase",
        Some(json!({ "confirm": "erase everything", "password": "not the password", "code": home.totp_code(1) })),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = home.api(
        "POST",
        "/api/erase",
        Some(json!({ "confirm": "erase everything", "password": PASSWORD })),
    );
    assert_eq!(r.status, 400, "a code is needed with two-factor on: {}", r.text());
    // A failed re-entry is not a logout: the session still answers.
    assert_eq!(home.api("GET", "/api/session", None).status, 200);
    assert_eq!(
        home.daemon
            .cli_json(&["devices", "list"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let r = home.api(
        "POST",
        "/api/erase",
        Some(json!({ "confirm": "erase everything", "password": PASSWORD, "code": home.totp_code(1) })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data_keys_destroyed"].as_u64().unwrap() >= 1);
    let Home { daemon, .. } = home;
    let dir = daemon.stop_keeping_home();
    let left: Vec<_> = std::fs::read_dir(dir.data_dir()).unwrap().collect();
    assert!(left.is_empty(), "files left: {left:?}");
    let log = std::fs::read_to_string(dir.path("daemon.log")).unwrap();
    assert!(log.contains("fresh install"), "{log}");
    for secret in ["Betty's lamp", "Betty's room", owner] {
        assert!(!log.contains(secret));
    }
    // The next start is a fresh install, with a new setup code.
    let daemon = Daemon::start_in_with(dir, "");
    assert!(daemon.home.data_dir().join("setup-code").exists());
    assert_eq!(daemon.cli_json(&["devices", "list"]), json!([]));
}

/// With `web.metrics = "token"`, `/metrics` answers only the bearer token
/// from `hearth metrics token`; a new token revokes the old one, and the
/// token opens nothing else.
#[test]
fn metrics_in_token_mode_need_the_current_token_and_open_nothing_else() {
    let daemon = Daemon::start_with("[web]\nlisten = [\"127.0.0.1:0\"]\nmetrics = \"token\"\n");
    let web = Target::tls(daemon.web_port(), &daemon.ca_cert());
    let scrape = |token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        web.send("GET", "/metrics", &headers, b"")
    };
    let r = scrape(None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").unwrap_or("").starts_with("Bearer"));
    assert!(r.text().contains("hearth metrics token"));
    assert_eq!(scrape(Some("not-a-token")).status, 401);
    let first = daemon.cli_json(&["metrics", "token"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = scrape(Some(&first));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().lines().any(|l| l.starts_with("hearth_uptime_seconds ")));
    // It is no session: the API refuses it.
    let bearer = format!("Bearer {first}");
    let r = web.send("GET", "/api/devices", &[("Authorization", &bearer)], b"");
    assert_eq!(r.status, 401);
    // A new token revokes the old one.
    let second = daemon.cli_json(&["metrics", "token"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(scrape(Some(&first)).status, 401);
    assert_eq!(scrape(Some(&second)).status, 200);
    let log = std::fs::read_to_string(daemon.home.path("daemon.log")).unwrap();
    assert!(
        !log.contains(&first) && !log.contains(&second),
        "a metrics token is in the log"
    );
    let db = std::fs::read(daemon.home.data_dir().join("hearth.db")).unwrap();
    assert!(
        find_in_bytes(&db, std::slice::from_ref(&second)).is_empty(),
        "the token is stored in clear"
    );
    // A lockdown revokes it too; a lockdown with none to revoke says so.
    let report = daemon.cli_json(&["lockdown"]);
    assert_eq!(report["metrics_token_revoked"], true, "{report}");
    assert_eq!(scrape(Some(&second)).status, 401);
    assert_eq!(daemon.cli_json(&["lockdown"])["metrics_token_revoked"], false);
}

/// The relay's counters in `/metrics`: the sum of every
/// `hearth_relay_connections_refused_total` reason, and each reason.
fn refused_connections(web: &Target) -> (u64, HashMap<String, u64>) {
    let metrics = web.send("GET", "/metrics", &[], b"").text();
    let mut by = HashMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("hearth_relay_connections_refused_total{reason=\"") {
            let (reason, n) = rest.split_once("\"} ").unwrap();
            by.insert(reason.to_owned(), n.parse::<u64>().unwrap());
        }
    }
    (by.values().sum(), by)
}

/// 500 connections that send a request line and a Host header, then
/// nothing, from ten loopback addresses: a valid call still answers within
/// 100 ms all along, every slow connection is closed by the relay, and each
/// is counted once, by reason, with counts only.
#[test]
fn slow_clients_never_delay_a_valid_call_and_are_closed() {
    use std::io::{Read, Write};
    const SLOW: usize = 500;
    const ADDRESSES: usize = 10;
    const BOUND: Duration = Duration::from_millis(100);
    let mut home = Home::new();
    let lamp_id = home.lamp.id().to_owned();
    let second = home.owner.recovery[0].clone();
    let (access, _) = home.link(&second, &[&lamp_id], &["power"]);
    let port = home.relay.port;
    let (before, _) = refused_connections(&home.owner.web);
    let discover = json!({
        "directive": {
            "header": { "namespace": "Alexa.Discovery", "name": "Discover", "payloadVersion": "3", "messageId": "m-slow" },
            "payload": { "scope": { "type": "BearerToken", "token": access } },
        }
    })
    .to_string();

    let mut slowest = (Duration::ZERO, Duration::ZERO);
    let valid_call = |home: &mut Home, slowest: &mut (Duration, Duration)| {
        let started = Instant::now();
        let r = home.relay.send("GET", "/health", &[], b"");
        let health = started.elapsed();
        assert_eq!(r.status, 200);
        let started = Instant::now();
        let r = home.call("POST", "/alexa", &[], discover.as_bytes());
        let alexa = started.elapsed();
        assert_eq!(
            r.json()["event"]["header"]["name"],
            "Discover.Response",
            "{}",
            r.text()
        );
        assert!(
            health < BOUND && alexa < BOUND,
            "a valid call took {health:?} (/health) and {alexa:?} (Discover)"
        );
        *slowest = (slowest.0.max(health), slowest.1.max(alexa));
    };
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        // 50 in a row from each address: each meets its address's cap,
        // and together they fill the relay.
        let source = std::net::IpAddr::from([127, 0, 0, 2 + (i / (SLOW / ADDRESSES)) as u8]);
        let mut s = crate::http::connect_from(source, port).unwrap();
        // The relay may already have refused it; a write to a closed
        // connection is its business, not a failure of this test.
        let _ = s.write_all(b"POST /alexa HTTP/1.1\r\nHost: relay.invalid\r\n");
        slow.push(s);
        if i % 50 == 49 {
            valid_call(&mut home, &mut slowest);
        }
    }
    valid_call(&mut home, &mut slowest);
    eprintln!(
        "slowest valid calls among {SLOW} slow connections: /health {:?}, Discover {:?}",
        slowest.0, slowest.1
    );

    // Every slow connection is closed by the relay, within its deadlines.
    let deadline = Instant::now() + LIMIT;
    for (i, s) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "slow connection {i} is still open");
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                // A refusal answer, if any, is read to the end.
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("slow connection {i} was not closed by the relay: {e}"),
            }
        }
    }

    // Each counted once, by reason; no address or name in the metrics.
    let deadline = Instant::now() + LIMIT;
    let by = loop {
        let (total, by) = refused_connections(&home.owner.web);
        if total - before == SLOW as u64 {
            break by;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {SLOW} slow connections counted: {by:?}",
            total - before
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(by["address_cap"] > 0 && by["evicted_idle"] > 0, "{by:?}");
    let metrics = home.owner.web.send("GET", "/metrics", &[], b"").text();
    assert!(!metrics.contains("127.0.0."), "an address is in /metrics");
    // And the relay still answers.
    valid_call(&mut home, &mut slowest);
    home.check_answers();
}

/// 64 wrong logins sent at once from one address reach the password check
/// at most five times; the rest are throttled (429) and counted. The same
/// rule covers the relay's consent login, which uses the same accounts.
#[test]
fn parallel_wrong_logins_reach_the_password_check_at_most_five_times() {
    const BURST: usize = 64;
    let home = Home::new();
    let metric = |name: &str| -> u64 {
        let metrics = home.owner.web.send("GET", "/metrics", &[], b"").text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    let burst = |send: &(dyn Fn(usize) -> Reply + Sync)| -> Vec<Reply> {
        let barrier = std::sync::Barrier::new(BURST);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..BURST)
                .map(|i| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        send(i)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let count = |replies: &[Reply], status: u16| replies.iter().filter(|r| r.status == status).count();

    // The dashboard, from 127.0.0.5.
    let (failures, throttled) = (
        metric("hearth_login_failures_total"),
        metric("hearth_login_throttled_total"),
    );
    let web = home
        .owner
        .web
        .clone()
        .from(std::net::IpAddr::from([127, 0, 0, 5]));
    let origin = format!("https://{}", web.host());
    let body =
        json!({ "username": OWNER, "password": "not the password at all", "code": "000000" }).to_string();
    let replies = burst(&|_| {
        web.send(
            "POST",
            "/api/login",
            &[("Origin", &origin), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let (checked, refused) = (count(&replies, 401), count(&replies, 429));
    assert_eq!(checked + refused, BURST, "{statuses:?}");
    assert!(
        (1..=5).contains(&checked),
        "{checked} reached the password check: {statuses:?}"
    );
    assert_eq!(metric("hearth_login_failures_total") - failures, checked as u64);
    assert_eq!(metric("hearth_login_throttled_total") - throttled, refused as u64);

    // The relay's consent login, for another account name (its own
    // throttle key), checked against a decoy hash all the same. The relay
    // holds at most 16 connections per address, so the 64 come from four
    // addresses at once: the account's key alone holds them to five.
    let throttled = metric("hearth_login_throttled_total");
    let relays: Vec<Target> = (6..10)
        .map(|n| home.relay.clone().from(std::net::IpAddr::from([127, 0, 0, n])))
        .collect();
    let mut form_body = home
        .authorize_query(REDIRECT, "s", None)
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    form_body
        .push_str("&step=login&username=someone%40home.invalid&password=wrong-password-here&code=000000");
    let replies = burst(&|i| {
        relays[i % relays.len()].send(
            "POST",
            "/oauth/authorize",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form_body.as_bytes(),
        )
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    // The login throttle answers with its page; the relay's own
    // per-address rate (burst 60) would answer a bare 429, and must not
    // have had to.
    let throttle_page = replies
        .iter()
        .filter(|r| r.status == 429 && r.text().contains("Too many attempts"))
        .count();
    let rate_limited = replies
        .iter()
        .filter(|r| r.status == 429 && r.body.is_empty())
        .count();
    let checked = count(&replies, 401);
    assert_eq!(checked + throttle_page + rate_limited, BURST, "{statuses:?}");
    assert_eq!(rate_limited, 0, "{statuses:?}");
    assert!(
        (1..=5).contains(&checked),
        "{checked} reached the password check: {statuses:?}"
    );
    assert_eq!(
        metric("hearth_login_throttled_total") - throttled,
        throttle_page as u64
    );

    // The flood costs the owner's account only its back-off (1 s after
    // five failures): then the right password and code log in.
    let code = home.totp_code(1);
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = home.owner.web.send(
            "POST",
            "/api/login",
            &[
                ("Origin", &format!("https://{}", home.owner.web.host())),
                ("Content-Type", "application/json"),
            ],
            json!({ "username": OWNER, "password": PASSWORD, "code": code })
                .to_string()
                .as_bytes(),
        );
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(Instant::now() < deadline, "the owner never got in: {}", r.text());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A voice name equal to the nickname, ignoring case and white space, is
/// refused at the API and the CLI alike; a renamed nickname cannot become
/// the voice name either.
#[test]
fn a_voice_name_equal_to_the_nickname_is_refused() {
    let home = Home::new();
    let (lamp, hall) = (home.lamp.id().to_owned(), home.hall.id().to_owned());
    // The CLI: "Betty's lamp" is the lamp's nickname.
    let out = home.daemon.cli(&[
        "devices",
        "expose",
        &lamp,
        "--voice",
        "on",
        "--voice-name",
        "betty's   LAMP",
    ]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(said.contains("must not be the device's nickname"), "{said}");
    // The API.
    let r = home.api(
        "PATCH",
        &format!("/api/devices/{hall}"),
        Some(json!({ "voice_name": "HALL  light" })),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("must not be the device's nickname"),
        "{}",
        r.text()
    );
    // Renaming the nickname onto the voice name is refused too.
    let out = home
        .daemon
        .cli(&["devices", "rename", &lamp, "--nickname", "Reading Lamp"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    // Nothing changed.
    let list = home.daemon.cli_json(&["devices", "list"]);
    let of = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of(&lamp)["voice_name"], "reading lamp");
    assert_eq!(of(&hall)["voice_name"], "ceiling light");
    // A voice name of its own is taken.
    let r = home.api(
        "PATCH",
        &format!("/api/devices/{hall}"),
        Some(json!({ "voice_name": "corridor light" })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
