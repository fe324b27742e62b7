//! The command line: config checking, exit codes, help.

use std::time::Duration;

use crate::harness::{TestHome, hearth, run, text};

/// Table of config files given to `check-config` and `run`: each must exit
/// 64 with a message that names the key and what to change, and `run` must
/// not create the data directory.
#[test]
fn bad_configs_are_refused_with_the_key_named() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key",
            "colour = \"blue\"\n",
            &["unknown field `colour`", "line 1"],
        ),
        (
            "unknown nested key",
            "[mqtt]\ntls_prot = 8883\n",
            &["unknown field `tls_prot`", "line 2"],
        ),
        (
            "unsafe listener",
            "[mqtt]\nplain_listen = [\"0.0.0.0:1883\"]\n",
            &[
                "mqtt.plain_listen",
                "0.0.0.0:1883",
                "allow_plaintext_lan = true",
                "127.0.0.1",
            ],
        ),
        (
            "missing key file",
            "[store]\nkey_file = \"/nonexistent/hearth/master.key\"\n",
            &[
                "store.key_file",
                "/nonexistent/hearth/master.key",
                "does not exist",
                "hearth init",
            ],
        ),
        (
            "bad level",
            "[log]\nlevel = \"chatty\"\n",
            &["log.level", "error, warn, info, debug, trace"],
        ),
        ("not TOML", "[mqtt\n", &["not valid", "line 1"]),
    ];
    for (name, body, phrases) in cases {
        let home = TestHome::new();
        let file = home.path("hearth.toml");
        std::fs::write(&file, body).unwrap();
        for args in [vec!["check-config".into(), file.clone().into_os_string()], {
            let mut v: Vec<std::ffi::OsString> = vec!["run".into(), "--config".into(), file.clone().into()];
            v.extend(["--data-dir".into(), home.data_dir().into()]);
            v
        }] {
            let out = run(hearth().args(&args), Duration::from_secs(30));
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{name} {args:?}: {stderr}");
            for phrase in *phrases {
                assert!(stderr.contains(phrase), "{name}: missing {phrase:?} in {stderr}");
            }
            assert!(
                !home.data_dir().exists(),
                "{name}: run created the data directory"
            );
        }
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let home = TestHome::new();
    let file = home.path("hearth.toml");
    std::fs::write(
        &file,
        "[mqtt]\nplain_listen = [\"0.0.0.0:1884\"]\nallow_plaintext_lan = true\n",
    )
    .unwrap();
    let out = run(hearth().arg("check-config").arg(&file), Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Defaults are filled in, and the opt-in is warned about.
    assert!(stdout.contains("level = \"info\""), "{stdout}");
    assert!(stdout.contains("0.0.0.0:1884"), "{stdout}");
    assert!(stdout.contains("tls_listen"), "{stdout}");
    assert!(text(&out.stderr).contains("warning: mqtt.allow_plaintext_lan"));
}

#[test]
fn the_default_config_checks_clean() {
    let home = TestHome::new();
    let out = run(hearth().arg("print-default-config"), Duration::from_secs(30));
    assert!(out.status.success());
    let file = home.path("default.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = run(hearth().arg("check-config").arg(&file), Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    assert_eq!(
        run(hearth().arg("frobnicate"), Duration::from_secs(30))
            .status
            .code(),
        Some(64)
    );
    assert_eq!(
        run(hearth().args(["run", "--bogus"]), Duration::from_secs(30))
            .status
            .code(),
        Some(64)
    );
    for cmd in ["run", "init", "check-config", "print-default-config"] {
        let out = run(hearth().args([cmd, "--help"]), Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{cmd} --help");
        assert!(text(&out.stdout).contains("Usage: hearth"), "{cmd}");
    }
}

/// `hearth matter`: off, each command says how to turn it on; on, pairing
/// opens with a QR code above the codes and closes early, controllers are
/// listed, an unknown one is not removed, and no code reaches the log.
#[test]
fn matter_commands_pair_close_list_and_remove() {
    let off = crate::harness::Daemon::start();
    for args in [
        &["matter", "pair"][..],
        &["matter", "controllers"],
        &["matter", "remove", "1"],
    ] {
        let out = off.cli(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(
            text(&out.stderr).contains("enabled = true under [matter]"),
            "{}",
            text(&out.stderr)
        );
    }
    drop(off);

    // Matter refuses port 0; a port free a moment ago is as good.
    let port = std::net::UdpSocket::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = crate::harness::Daemon::start_with(&format!(
        "[matter]\nenabled = true\nport = {port}\n[log]\nlevel = \"debug\"\n"
    ));
    let status = daemon.cli_json(&["matter", "status"]);
    assert_eq!(
        (
            status["pairing_open"].as_bool(),
            status["fabrics"].as_u64(),
            status["port"].as_u64()
        ),
        (Some(false), Some(0), Some(port.into()))
    );

    let out = daemon.cli(&["matter", "pair"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let qr_rows: Vec<&str> = shown
        .lines()
        .take_while(|l| l.chars().all(|c| " █▀▄".contains(c)) && !l.is_empty())
        .collect();
    assert!(qr_rows.len() >= 13, "no QR code above the codes:\n{shown}");
    let pretty = shown
        .split("enter the setup code ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or_else(|| panic!("no code in:\n{shown}"))
        .to_owned();
    assert!(
        pretty.len() == 13 && pretty.split('-').map(str::len).eq([4, 3, 4]),
        "{pretty}"
    );
    let codes = daemon.cli_json(&["matter", "pair"]);
    assert_eq!(codes["manual_code_pretty"], pretty.as_str());
    let manual = codes["manual_code"].as_str().unwrap().to_owned();
    let qr = codes["qr"].as_str().unwrap().to_owned();
    assert_eq!(manual, pretty.replace('-', ""));
    assert!(shown.contains(&qr));
    assert_eq!(daemon.cli_json(&["matter", "status"])["pairing_open"], true);

    let out = daemon.cli(&["matter", "controllers"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no controller has joined"));
    assert_eq!(
        daemon.cli_json(&["matter", "controllers"]),
        serde_json::json!({ "controllers": [] })
    );
    let out = daemon.cli(&["matter", "remove", "5"]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out.stderr).contains("no controller with index 5"),
        "{}",
        text(&out.stderr)
    );

    let out = daemon.cli(&["matter", "pair", "--close"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "Matter pairing closed");
    assert_eq!(daemon.cli_json(&["matter", "pair", "--close"])["was_open"], false);
    assert_eq!(daemon.cli_json(&["matter", "status"])["pairing_open"], false);

    let (_, log) = daemon.stop();
    assert!(log.contains("matter pairing opened by the owner"), "{log}");
    for secret in [&manual, &pretty, &qr] {
        assert!(!log.contains(secret.as_str()), "a setup code reached the log");
    }
}
