//! The assistants' own rules, applied to every answer the relay tests
//! received: Amazon's message schema rules (as hearth's schema in
//! tests/fixtures/alexa, checked with python-jsonschema) and Google's
//! published Smart Home typings (npm's actions-on-google, checked with
//! `tsc --strict`). scripts/test-all installs both, pinned; a test run
//! without it installs them the same way first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{run, text};

/// Installing from two registries takes a minute; the tests that check
/// answers wait for one install rather than racing each other.
static INSTALL: Mutex<()> = Mutex::new(());

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/relay"))
}

fn python() -> PathBuf {
    dir().join(".venv/bin/python")
}

/// Creates tests/relay/.venv and tests/relay/node_modules as
/// scripts/test-all does, when they are missing.
fn ensure_installed() {
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let limit = Duration::from_secs(600);
    let jsonschema = python().exists()
        && run(Command::new(python()).args(["-c", "import jsonschema"]), limit)
            .status
            .success();
    if !jsonschema {
        if !python().exists() {
            let out = run(
                Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(dir().join(".venv")),
                limit,
            );
            assert!(out.status.success(), "python3 -m venv: {}", text(&out.stderr));
        }
        let out = run(
            Command::new(dir().join(".venv/bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(dir().join("requirements.txt")),
            limit,
        );
        assert!(out.status.success(), "pip install: {}", text(&out.stderr));
    }
    if !dir().join("node_modules/typescript/bin/tsc").exists()
        || !dir().join("node_modules/actions-on-google/package.json").exists()
    {
        let out = run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(dir()),
            limit,
        );
        assert!(out.status.success(), "npm ci: {}", text(&out.stderr));
    }
}

/// Every Alexa answer must pass hearth's schema of Amazon's rules; `file`
/// is where they are written for the validator.
pub fn check_alexa(answers: &[Value], file: &Path) {
    assert!(!answers.is_empty(), "no Alexa answer to check");
    ensure_installed();
    std::fs::write(file, serde_json::to_vec_pretty(answers).unwrap()).unwrap();
    let out = run(
        Command::new(python())
            .arg(dir().join("validate_alexa.py"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/alexa/hearth-alexa-messages.schema.json"
            ))
            .arg(file),
        Duration::from_secs(120),
    );
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "Alexa answers fail Amazon's rules:\n{report}{}",
        text(&out.stderr)
    );
    assert_eq!(
        report.lines().last(),
        Some(format!("{} valid", answers.len()).as_str()),
        "{report}"
    );
}

/// Every Google answer (SYNC, QUERY, EXECUTE, DISCONNECT) must type-check
/// as Google's published response type for its intent; `work` is a
/// directory for the TypeScript file.
pub fn check_google(answers: &[(String, Value)], work: &Path) {
    ensure_installed();
    std::fs::create_dir_all(work).unwrap();
    let modules = work.join("node_modules");
    if !modules.exists() {
        std::os::unix::fs::symlink(dir().join("node_modules"), &modules).unwrap();
    }
    let mut ts = String::from(
        "import type {\n  SmartHomeV1DisconnectResponse,\n  SmartHomeV1ExecuteResponse,\n  \
         SmartHomeV1QueryResponse,\n  SmartHomeV1SyncResponse,\n} from 'actions-on-google';\n\n",
    );
    let mut typed = 0;
    let mut syncs = 0;
    for (i, (intent, answer)) in answers.iter().enumerate() {
        let ty = match intent.as_str() {
            "action.devices.SYNC" => {
                syncs += 1;
                "SmartHomeV1SyncResponse"
            }
            "action.devices.QUERY" => "SmartHomeV1QueryResponse",
            "action.devices.EXECUTE" => "SmartHomeV1ExecuteResponse",
            "action.devices.DISCONNECT" => "SmartHomeV1DisconnectResponse",
            other => panic!("an answer to {other:?}, which hearth does not serve: {answer}"),
        };
        ts.push_str(&format!("export const answer{i}: {ty} = {answer};\n"));
        typed += 1;
    }
    assert!(typed > 0, "no Google answer to check");
    eprintln!("type-checking {typed} Google answers ({syncs} SYNC)");
    let file = work.join("answers.ts");
    std::fs::write(&file, ts).unwrap();
    let out = run(
        Command::new("npx")
            .args(["--no-install", "tsc", "--noEmit", "--strict", "--skipLibCheck"])
            .arg(&file)
            .current_dir(work),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "Google answers fail Google's typings:\n{}{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(&file).unwrap()
    );
}
