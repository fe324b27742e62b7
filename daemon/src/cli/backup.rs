//! `hearth backup create|restore`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::{Bar, RunArgs, UsageError, resolve_data_dir};
use crate::config::Config;
use crate::safety::backup::{self, Contents};
use crate::store::AuditKind;
use crate::store::files;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write one encrypted file holding the store, the configuration (with
    /// --config) and the master key, sealed under a passphrase (argon2id
    /// and ChaCha20-Poly1305). hearth may be running.
    Create {
        #[command(flatten)]
        args: RunArgs,
        /// Where to write the backup (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Restore a backup into the data directory: the file and the store in
    /// it are checked before anything is touched, then the data directory
    /// is replaced in one step. hearth must be stopped.
    Restore {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        args: RunArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
}

#[derive(Debug, Args)]
pub struct PassArgs {
    /// Read the passphrase from this file (its first line); without it,
    /// hearth asks on the terminal.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

/// The passphrase from a file (first line) or, on a terminal, typed twice
/// (once to restore) without echo.
fn passphrase(args: &PassArgs, twice: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = &args.passphrase_file {
        let text =
            Zeroizing::new(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?);
        return Ok(Zeroizing::new(text.lines().next().unwrap_or("").to_owned()));
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(UsageError(
            "give the backup's passphrase with --passphrase-file FILE (no terminal to ask on)".into()
        ));
    }
    let first = read_hidden("Backup passphrase: ")?;
    if twice {
        let again = read_hidden("The same again: ")?;
        if *again != *first {
            anyhow::bail!(UsageError("the passphrases differ; nothing was written".into()));
        }
    }
    Ok(first)
}

fn read_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    use std::io::BufRead;
    eprint!("{prompt}");
    let fd = libc::STDIN_FILENO;
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let saved = (unsafe { libc::tcgetattr(fd, &mut term) } == 0).then_some(term);
    if let Some(mut t) = saved {
        t.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    let mut line = Zeroizing::new(String::new());
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Some(t) = saved {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    eprintln!();
    read?;
    Ok(Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned()))
}

pub fn run(cmd: BackupCommand) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::Create { args, out, pass } => create(&args, &out, &pass),
        BackupCommand::Restore { file, args, pass } => restore(&file, &args, &pass),
    }
}

fn config_of(args: &RunArgs) -> anyhow::Result<(Config, Option<String>)> {
    Ok(match &args.config {
        Some(path) => (
            Config::load(path)?,
            Some(std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?),
        ),
        None => (Config::default(), None),
    })
}

fn create(args: &RunArgs, out: &Path, pass: &PassArgs) -> anyhow::Result<()> {
    let (config, config_text) = config_of(args)?;
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    if data_dir.state()? != crate::store::DirState::Store {
        return Err(crate::store::StoreError::NotAStore {
            path: data_dir.path().to_path_buf(),
        }
        .into());
    }
    let passphrase = passphrase(pass, true)?;
    backup::check_passphrase(&passphrase)?;
    let mut bar = Bar::new("backup");
    bar.show(0, 4);
    let db = backup::snapshot(&data_dir)?;
    bar.show(1, 4);
    let key_path = files::resolve_key_path(config.key_file.as_deref(), &data_dir);
    let master_key = match std::fs::read(&key_path) {
        Ok(k) => Some(Zeroizing::new(k)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", key_path.display())),
    };
    let contents = Contents {
        db,
        config: config_text,
        master_key,
    };
    let sealed = backup::seal(&contents, &passphrase)?;
    bar.show(3, 4);
    let out = std::path::absolute(out)?;
    backup::write(&out, &sealed)?;
    backup::remember(&data_dir, &out)?;
    bar.show(4, 4);
    let detail = backup::audit_detail(sealed.len(), "sealed under a passphrase");
    let audited = match crate::app::admin::request(
        data_dir.path(),
        &crate::app::admin::Request::BackupCreated {
            detail: detail.clone(),
        },
    ) {
        Ok(_) => true,
        Err(crate::app::admin::AdminError::NotRunning { .. }) => {
            let mut store = crate::store::open_or_init(&data_dir, config.key_file.as_deref())?;
            store.append_audit(&crate::store::AuditEvent::ok(
                AuditKind::BackupCreated,
                crate::store::Actor::Cli,
                detail,
            ))?;
            true
        }
        Err(e) => return Err(e.into()),
    };
    debug_assert!(audited);
    println!(
        "backup written to {} ({} bytes): the store{}{}; it opens only with the passphrase",
        out.display(),
        sealed.len(),
        if contents.config.is_some() {
            ", the configuration"
        } else {
            ""
        },
        if contents.master_key.is_some() {
            " and the master key"
        } else {
            ""
        },
    );
    Ok(())
}

fn restore(file: &Path, args: &RunArgs, pass: &PassArgs) -> anyhow::Result<()> {
    let (config, _) = config_of(args)?;
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    let bytes = backup::read(file)?;
    let passphrase = passphrase(pass, false)?;
    let mut bar = Bar::new("restore");
    bar.show(0, 4);
    let contents = backup::open(&bytes, &passphrase, &file.display().to_string())?;
    bar.show(1, 4);
    let mut step = 1;
    let restored = backup::restore(&contents, &data_dir, None, |_| {
        step += 1;
        bar.show(step.min(3), 4);
    })?;
    backup::remember(&data_dir, &std::path::absolute(file)?)?;
    bar.show(4, 4);
    let mut store = crate::store::open_or_init(&data_dir, None)?;
    store.append_audit(&crate::store::AuditEvent::ok(
        AuditKind::Restored,
        crate::store::Actor::Cli,
        format!(
            "{} device{} restored from a backup",
            restored.devices,
            if restored.devices == 1 { "" } else { "s" }
        ),
    ))?;
    println!(
        "restored {} with {} device{}{}",
        restored.data_dir.display(),
        restored.devices,
        if restored.devices == 1 { "" } else { "s" },
        match &restored.config {
            Some(p) => format!("; the backup's configuration is at {}", p.display()),
            None => String::new(),
        }
    );
    Ok(())
}
