//! Commands that open the store themselves while hearth is stopped:
//! `hearth keys rewrap`, `hearth keys rotate` (offline) and `hearth erase`.

use std::path::Path;

use anyhow::Context;

use super::{
    AuditKind, Config, DataDir, Request, RunArgs, StoreError, UsageError, print_json, resolve_data_dir,
};

/// A progress bar on standard error: redrawn in place on a terminal, a
/// line per quarter otherwise.
pub(super) struct Bar {
    what: &'static str,
    tty: bool,
    last: Option<u64>,
}

impl Bar {
    pub(super) fn new(what: &'static str) -> Bar {
        use std::io::IsTerminal;
        Bar {
            what,
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub(super) fn show(&mut self, done: u64, total: u64) {
        let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
        if self.tty {
            let filled = (pct / 4) as usize;
            eprint!(
                "\r{} [{}{}] {pct:>3}% ({done}/{total})",
                self.what,
                "#".repeat(filled),
                " ".repeat(25 - filled)
            );
            if pct == 100 {
                eprintln!();
            }
        } else if self.last.is_none_or(|l| pct / 25 > l / 25) {
            eprintln!("{}: {pct}% ({done}/{total})", self.what);
        }
        self.last = Some(pct);
    }
}

/// Opens the store of a stopped hearth, with the configured key.
pub(super) fn open_offline(data_dir: &DataDir, config: &Config) -> anyhow::Result<crate::store::Store> {
    if data_dir.state()? != crate::store::DirState::Store {
        return Err(StoreError::NotAStore {
            path: data_dir.path().to_path_buf(),
        }
        .into());
    }
    data_dir.check_permissions()?;
    Ok(crate::store::open_or_init(data_dir, config.key_file.as_deref())?)
}

pub(super) fn keys_rewrap(args: &RunArgs, passphrase_file: Option<&Path>) -> anyhow::Result<()> {
    use crate::store::files;
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    if std::os::unix::net::UnixStream::connect(data_dir.admin_socket()).is_ok() {
        anyhow::bail!(crate::safety::erase::EraseError::Running(
            data_dir.path().display().to_string()
        ));
    }
    let mut store = open_offline(&data_dir, &config)?;
    let was_passphrase = files::passphrase_kdf(&data_dir.db_path())?.is_some();
    let key_path = files::resolve_key_path(config.key_file.as_deref(), &data_dir);
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|c| key_path.starts_with(c));
    match passphrase_file {
        Some(f) => {
            let passphrase = files::read_passphrase(f)?;
            crate::safety::backup::check_passphrase(&passphrase)?;
            eprintln!("deriving the key (argon2id, 64 MiB)...");
            let kdf = crate::store::crypto::Kdf::generate()?;
            let master = crate::store::MasterKey::from_passphrase(passphrase.as_bytes(), &kdf)?;
            store.rewrap(&master, Some(&kdf))?;
            drop(store);
            if !was_passphrase && !credential && key_path.exists() {
                shred(&key_path)?;
            }
            let mut audit = open_offline_with(&data_dir, f)?;
            audit.append_audit(&crate::store::AuditEvent::ok(
                AuditKind::KeysRewrapped,
                crate::store::Actor::Cli,
                "master key: now derived from a passphrase",
            ))?;
            println!(
                "passphrase mode: the data keys are wrapped under the passphrase's key{}. Start hearth with {}={} \
                 or the systemd credential {}",
                if was_passphrase || credential {
                    ""
                } else {
                    "; the key file is overwritten and removed"
                },
                files::PASSPHRASE_ENV,
                f.display(),
                files::PASSPHRASE_CREDENTIAL
            );
        }
        None => {
            if credential {
                anyhow::bail!(UsageError(
                    "the master key is a systemd credential: give a key file path with store.key_file to rewrap into".into()
                ));
            }
            let pending = files::pending_key_path(&key_path);
            let _ = std::fs::remove_file(&pending);
            let master = files::write_new_key(&pending)?;
            store.rewrap(&master, None)?;
            drop(store);
            if key_path.exists() {
                shred(&key_path)?;
            }
            std::fs::rename(&pending, &key_path).with_context(|| key_path.display().to_string())?;
            files::sync_parent(&key_path)?;
            let mut audit = open_offline(&data_dir, &config)?;
            audit.append_audit(&crate::store::AuditEvent::ok(
                AuditKind::KeysRewrapped,
                crate::store::Actor::Cli,
                "master key: a new key file",
            ))?;
            println!(
                "the data keys are wrapped under a new master key in {}; the old key opens nothing now",
                key_path.display()
            );
        }
    }
    Ok(())
}

/// Opens a store in passphrase mode with the passphrase in `file`.
pub(super) fn open_offline_with(data_dir: &DataDir, file: &Path) -> anyhow::Result<crate::store::Store> {
    let kdf = crate::store::files::passphrase_kdf(&data_dir.db_path())?
        .ok_or_else(|| anyhow::anyhow!("the store is not in passphrase mode"))?;
    let passphrase = crate::store::files::read_passphrase(file)?;
    let master = crate::store::MasterKey::from_passphrase(passphrase.as_bytes(), &kdf)?;
    Ok(crate::store::Store::open(&data_dir.db_path(), &master, file)?)
}

/// Overwrites a key file with random bytes, syncs it, and removes it.
pub(super) fn shred(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let len = std::fs::metadata(path)?.len() as usize;
    let mut noise = vec![0u8; len.max(64)];
    crate::store::crypto::fill_random(&mut noise)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(&noise)?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(path)?;
    Ok(())
}

pub(super) fn keys_rotate(args: &RunArgs, json: bool) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    let mut bar = Bar::new("re-sealing");
    let last = match crate::app::admin::request(data_dir.path(), &Request::KeysRotate) {
        Ok(mut v) => loop {
            bar.show(v["done"].as_u64().unwrap_or(0), v["total"].as_u64().unwrap_or(0));
            if v["finished"] == true {
                break v;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            v = crate::app::admin::request(data_dir.path(), &Request::KeysStatus)?;
        },
        Err(crate::app::admin::AdminError::NotRunning { .. }) => {
            let mut store = open_offline(&data_dir, &config)?;
            store.begin_rotation()?;
            loop {
                let p = store.rotate_batch(crate::safety::rotate::BATCH, &crate::store::Actor::Cli)?;
                bar.show(p.done, p.total);
                if p.finished {
                    break serde_json::to_value(p)?;
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        print_json(&last);
    } else {
        println!(
            "data key rotated: {} rows re-sealed under the new key; the old key is destroyed",
            last["total"]
        );
    }
    Ok(())
}

pub(super) fn erase(args: &RunArgs, yes: bool) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    if !yes {
        use std::io::{BufRead, IsTerminal};
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(UsageError(format!(
                "hearth erase destroys everything in {}; pass --yes to confirm",
                data_dir.path().display()
            )));
        }
        eprint!(
            "This destroys hearth's keys and every file in {}: devices, credentials, owner account, audit log.\nType erase to confirm: ",
            data_dir.path().display()
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != "erase" {
            anyhow::bail!(UsageError("not confirmed; nothing was erased".to_owned()));
        }
    }
    let erased = crate::safety::erase::erase(&data_dir, config.key_file.as_deref())?;
    println!(
        "erased: {} destroyed, master key {}, {} removed from {}",
        super::count(&erased.data_keys_destroyed.into(), "data key"),
        match (&erased.master_key_removed, &erased.master_key_elsewhere) {
            (Some(p), _) => format!("overwritten and removed ({})", p.display()),
            (None, Some(p)) => format!(
                "at {} is a systemd credential: remove it from the unit (it opens nothing now)",
                p.display()
            ),
            _ => "not found".to_owned(),
        },
        super::count(&erased.files_removed.into(), "file"),
        data_dir.path().display()
    );
    for b in &erased.backups_removed {
        println!("backup overwritten and removed: {}", b.display());
    }
    Ok(())
}
