//! The command line: argument parsing (clap), each command's glue, and the
//! mapping from errors to sysexits codes.
//!
//! This is one of the two places `anyhow` is allowed. It must not log or
//! print a secret; errors it prints come from modules that already redact.

mod backup;
mod demo;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::app::admin::Request;
use crate::app::telemetry;
use crate::config::{Config, ConfigError, DEFAULT_TOML};
use crate::exit::ExitCode;
use crate::home::devices::AddDevice;
use crate::home::vendor::Profile;
use crate::store::AuditKind;
use crate::store::DeviceKind;
use crate::store::InitOutcome;
use crate::store::{DataDir, StoreError};
use crate::supervisor::{StopSignal, SupervisorError, stop_signal};

/// hearth: a local-first home gateway. It keeps a home's device metadata
/// encrypted on its own disk and needs no vendor cloud.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground, initialising a missing or empty
    /// data directory first.
    Run(RunArgs),
    /// Create the data directory (0700), a random master key (0600) and the
    /// encrypted store. On an existing data directory it changes nothing.
    Init(RunArgs),
    /// Validate a config file and print the effective configuration, with
    /// secrets redacted. Exits 64 with the key to change if it is invalid.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Print the default configuration, commented.
    PrintDefaultConfig,
    /// Manage devices on a running hearth (through its admin socket).
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Connect integrations to a running hearth (through its admin socket).
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// Turn the voice relay's listener on or off on a running hearth
    /// (linking an assistant still needs the owner's password and TOTP).
    #[command(subcommand)]
    Relay(RelayCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// What hearth holds about your home.
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// The keys that protect the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Prometheus metrics on the dashboard listener (`/metrics`).
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Encrypted backups of the store and configuration.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Erase everything hearth holds, for good: the keys first (so nothing
    /// left on the disk can be read), then every file in the data
    /// directory. hearth must be stopped. Afterwards `hearth run` starts as
    /// a fresh install.
    Erase {
        #[command(flatten)]
        args: RunArgs,
        /// Confirm; without it, hearth asks on a terminal and refuses
        /// otherwise.
        #[arg(long)]
        yes: bool,
    },
    /// Log everyone out: end every dashboard session, revoke every voice
    /// relay link and Home Assistant's password. Devices stay connected,
    /// and local control keeps working.
    Lockdown {
        /// Also rotate every device's credential; the new provisioning is
        /// printed once, for re-entry into each device.
        #[arg(long)]
        rotate_devices: bool,
        /// Also require a new password at the next login: the first
        /// dashboard login must change it before anything else.
        #[arg(long)]
        require_new_password: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a running hearth's listeners and counters.
    Status(AdminArgs),
    /// Run hearth with a simulated home (4 bulbs, 2 cameras, a plug and a
    /// doorbell) announced on loopback: it discovers and adopts them, and
    /// they obey commands. Ctrl-C stops everything.
    Demo {
        /// The data directory; a new temporary one when omitted.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Discover the simulated home but adopt nothing: adopt devices in
        /// the dashboard (or with `hearth devices adopt`) instead; each
        /// connects once adopted.
        #[arg(long)]
        leave_pending: bool,
        /// Run no simulated firmware: adopted devices connect only when you
        /// run one yourself with the provisioning shown at adoption
        /// (`hearth-sim device --provisioning FILE`), as the browser tests
        /// do.
        #[arg(long)]
        no_firmware: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Home Assistant, over hearth's own broker with MQTT discovery.
    #[command(subcommand)]
    Homeassistant(HomeAssistantCommand),
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Issue the read-only bearer token for `/metrics` (with
    /// `web.metrics = "token"`), shown once; any earlier token stops working.
    Token(AdminArgs),
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Every category of data held, with its count, where it is and in what
    /// form; how long each is kept; what leaves the house; and which
    /// listeners are open.
    Report(AdminArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain of the audit log, through the running
    /// daemon or, when none runs, from the store itself. Names the first
    /// entry that was altered, removed or reordered, and exits 65 if one
    /// was.
    Verify(AdminArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate the data key: a new key seals every new value at once, every
    /// stored value is re-sealed under it in the background (with a
    /// progress bar), then the old key is destroyed. Through the running
    /// daemon, or on the store itself when hearth is stopped. Crash-safe:
    /// run it again, or start hearth, and it resumes.
    Rotate {
        #[command(flatten)]
        args: RunArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show how far a rotation is.
    Status(AdminArgs),
    /// Write a new random master key file (mode 0600), for
    /// `store.key_file` or systemd's `LoadCredential=hearth.key:FILE`.
    /// Refuses to replace an existing file. The Debian package makes
    /// /etc/hearth/master.key with it.
    Generate {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Change the master key (hearth stopped): the data keys are wrapped
    /// again under a new random key file, or, with --passphrase-file, under
    /// a key derived from a passphrase with argon2id (64 MiB), which hearth
    /// then reads at start from HEARTH_PASSPHRASE_FILE or the systemd
    /// credential hearth.passphrase. The old key file is overwritten and
    /// removed; the old key opens nothing afterwards.
    Rewrap {
        #[command(flatten)]
        args: RunArgs,
        /// Passphrase mode: the new passphrase, in this file (first line,
        /// 12 characters or more).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Start listening on `relay.listen`, now and after restarts.
    Enable(AdminArgs),
    /// Stop listening; links and their tokens are kept.
    Disable(AdminArgs),
    /// Show whether it is on and where it listens.
    Status(AdminArgs),
}

#[derive(Debug, Subcommand)]
pub enum HomeAssistantCommand {
    /// Create the `homeassistant` MQTT credential and print what to enter
    /// into Home Assistant's MQTT integration. The password is shown once.
    Enable(AdminArgs),
    /// Issue a new password; the old one is refused and its session cut.
    Rotate(AdminArgs),
    /// Revoke the credential and remove every device from Home Assistant.
    Disable(AdminArgs),
    /// Show whether it is on and connected, and its settings.
    Status(AdminArgs),
    /// Change what Home Assistant is told.
    Set {
        /// Send model, vendor and firmware with each device (off by default).
        #[arg(long, value_parser = ["on", "off"])]
        share_device_details: Option<String>,
        /// `device` (Home Assistant 2024.11 and later), `component` (one
        /// config per entity, for 2024.4 to 2024.10) or `legacy` (one config
        /// per entity with the light's `color_mode` flag, for 2024.3 and
        /// older).
        #[arg(long, value_parser = ["device", "component", "legacy"])]
        discovery: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Provision a device by hand: it gets its own MQTT credential and
    /// topics. The password is printed once; hearth keeps only a hash.
    Add {
        /// The vendor's topic scheme.
        #[arg(long, value_parser = ["generic", "tasmota", "shelly", "esphome"])]
        profile: String,
        /// What the device is.
        #[arg(long, default_value = "other", value_parser = [
            "camera", "doorbell", "bulb", "plug", "light_strip",
            "motion_sensor", "contact_sensor", "climate_sensor", "water_sensor", "other",
        ])]
        kind: String,
        /// The owner's name for it (stored sealed).
        #[arg(long)]
        nickname: String,
        /// The room it is in (stored sealed).
        #[arg(long)]
        room: Option<String>,
        /// The topic base the device already uses (its Tasmota topic, Shelly
        /// prefix or ESPHome name); one is generated when omitted.
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List every device.
    List(AdminArgs),
    /// Forget a device: its credential is revoked and its session cut at once.
    Forget {
        /// The device id.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Adopt a discovered (pending) device: name it, and give it a
    /// credential and its topics. The password is printed once.
    Adopt {
        /// The pending device's id (from `devices list`).
        id: String,
        /// The owner's name for it (stored sealed).
        #[arg(long)]
        nickname: String,
        /// The room it is in (stored sealed).
        #[arg(long)]
        room: Option<String>,
        /// What it is, when discovery guessed wrong or could not tell (a
        /// Tasmota advert names no model).
        #[arg(long, value_parser = [
            "camera", "doorbell", "bulb", "plug", "light_strip",
            "motion_sensor", "contact_sensor", "climate_sensor", "water_sensor",
        ])]
        kind: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Rename a device, or move it to another room.
    Rename {
        /// The device id.
        id: String,
        #[arg(long)]
        nickname: String,
        #[arg(long)]
        room: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Switch an adopted device on or off (sent in its vendor's own scheme).
    Set {
        /// The device id.
        id: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Choose which integrations see a device (each is off by default).
    Expose {
        /// The device id.
        id: String,
        /// Show it to Home Assistant.
        #[arg(long, value_parser = ["on", "off"])]
        homeassistant: Option<String>,
        /// Let voice assistants reach it.
        #[arg(long, value_parser = ["on", "off"])]
        voice: Option<String>,
        /// What voice assistants call it, such as "desk lamp" (never its
        /// nickname); an empty name clears it.
        #[arg(long, value_name = "NAME")]
        voice_name: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Issue a new MQTT password; the old one is refused from now on.
    Rotate {
        /// The device id.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The data directory of the running hearth.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file. Without it, the built-in defaults are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory; overrides `data_dir` in the config.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Parses the command line, runs the command, and returns its exit code.
pub fn main() -> std::process::ExitCode {
    // An expected error on a client's path (a bad topic filter, say) must
    // not capture a backtrace: capturing costs time on every such error and
    // resolving one once cost about 35 MB. Panics keep theirs
    // (RUST_BACKTRACE still governs those).
    // SAFETY: the first statement of the process, before any other thread.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    // Two rustls crypto providers are compiled in (the broker crate brings
    // aws-lc-rs); choose hearth's, once, for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::Ok,
                _ => ExitCode::Usage,
            }
            .into();
        }
    };
    match execute(cli.command) {
        Ok(()) => ExitCode::Ok.into(),
        Err(err) => {
            eprintln!("hearth: error: {err:#}");
            exit_code(&err).into()
        }
    }
}

/// The sysexits code for an error, from the first typed error in its chain.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() || cause.downcast_ref::<UsageError>().is_some() {
            return ExitCode::Usage;
        }
        if let Some(e) = cause.downcast_ref::<crate::safety::erase::EraseError>() {
            return match e {
                crate::safety::erase::EraseError::Nothing(_) => ExitCode::DataErr,
                crate::safety::erase::EraseError::Running(_) => ExitCode::TempFail,
                crate::safety::erase::EraseError::Store(s) => s.exit_code(),
                crate::safety::erase::EraseError::Io { .. } => ExitCode::IoErr,
            };
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::safety::backup::BackupError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<app::DaemonError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::app::admin::AdminError>() {
            return e.exit_code();
        }
    }
    ExitCode::Software
}

pub fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run(args),
        Command::Init(args) => init(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::PrintDefaultConfig => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Devices(cmd) => devices(cmd),
        Command::Integrations(IntegrationsCommand::Homeassistant(cmd)) => homeassistant(cmd),
        Command::Relay(cmd) => relay(cmd),
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(&args),
        Command::Erase { args, yes } => erase(&args, yes),
        Command::Keys(KeysCommand::Rotate { args, json }) => keys_rotate(&args, json),
        Command::Keys(KeysCommand::Rewrap {
            args,
            passphrase_file,
        }) => keys_rewrap(&args, passphrase_file.as_deref()),
        Command::Backup(cmd) => backup::run(cmd),
        Command::Keys(KeysCommand::Generate { out }) => {
            if out.exists() {
                anyhow::bail!(UsageError(format!(
                    "{} exists; hearth never replaces a key file (remove it first if it holds no store's key)",
                    out.display()
                )));
            }
            crate::store::files::write_new_key(&out)?;
            println!("wrote a new master key to {} (mode 0600)", out.display());
            Ok(())
        }
        Command::Keys(KeysCommand::Status(admin)) => {
            let v = admin_request(&admin, &Request::KeysStatus)?;
            if admin.json {
                print_json(&v);
            } else if v["finished"] == true {
                println!("no rotation under way: every value is under the one data key");
            } else {
                println!("rotating: {} of {} rows re-sealed", v["done"], v["total"]);
            }
            Ok(())
        }
        Command::Metrics(MetricsCommand::Token(admin)) => {
            let v = admin_request(&admin, &Request::MetricsToken)?;
            if admin.json {
                print_json(&v);
            } else {
                println!("metrics token (shown once; the earlier one, if any, is revoked):");
                println!("  {}", v["token"].as_str().unwrap_or(""));
                println!(
                    "scrape with the header  Authorization: Bearer <token>  and web.metrics = \"token\""
                );
            }
            Ok(())
        }
        Command::Privacy(PrivacyCommand::Report(admin)) => {
            let v = admin_request(&admin, &Request::PrivacyReport)?;
            if admin.json {
                print_json(&v);
                return Ok(());
            }
            println!("What hearth holds:");
            for h in v["held"].as_array().into_iter().flatten() {
                println!(
                    "  {:>5}  {}\n         where: {}\n         form:  {}",
                    h["count"],
                    h["what"].as_str().unwrap_or(""),
                    h["where"].as_str().unwrap_or(""),
                    h["form"].as_str().unwrap_or("")
                );
            }
            println!("How long:");
            for r in v["retention"].as_array().into_iter().flatten() {
                println!("  - {}", r.as_str().unwrap_or(""));
            }
            println!("What leaves the house:");
            println!("  - {}", v["leaves_home"]["by_default"].as_str().unwrap_or(""));
            for l in v["leaves_home"]["voice_links"].as_array().into_iter().flatten() {
                println!(
                    "  - voice link {}: {} device(s), {} call(s) so far",
                    l["id"].as_str().unwrap_or(""),
                    l["devices"],
                    l["calls"]
                );
            }
            println!(
                "  - {}",
                v["leaves_home"]["home_assistant"].as_str().unwrap_or("")
            );
            println!("Open listeners:");
            for l in v["listeners"].as_array().into_iter().flatten() {
                let addrs: Vec<&str> = l["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .collect();
                println!(
                    "  - {}: {}",
                    l["what"].as_str().unwrap_or(""),
                    if addrs.is_empty() {
                        "off".to_owned()
                    } else {
                        addrs.join(", ")
                    }
                );
            }
            Ok(())
        }
        Command::Lockdown {
            rotate_devices,
            require_new_password,
            admin,
        } => {
            let v = admin_request(
                &admin,
                &Request::Lockdown {
                    rotate_devices,
                    require_new_password,
                },
            )?;
            if admin.json {
                print_json(&v);
            } else {
                println!(
                    "lockdown: {} dashboard session(s) ended, {} relay link(s) revoked, Home Assistant password {}",
                    v["sessions_ended"],
                    v["relay_links_revoked"],
                    if v["homeassistant_password_revoked"] == true {
                        "revoked (rotate it to reconnect)"
                    } else {
                        "not in use"
                    }
                );
                if v["metrics_token_revoked"] == true {
                    println!(
                        "lockdown: the metrics token is revoked (`hearth metrics token` issues a new one)"
                    );
                }
                if v["new_password_required"] == true {
                    println!("lockdown: the next dashboard login must choose a new password first");
                }
                for p in v["devices_rotated"].as_array().into_iter().flatten() {
                    print_provisioning(p);
                }
            }
            Ok(())
        }
        Command::Status(args) => status(&args),
        Command::Demo {
            data_dir,
            leave_pending,
            no_firmware,
        } => {
            let config = demo::config()?;
            telemetry::init(&config.log);
            let options = demo::Options {
                leave_pending,
                firmware: !no_firmware,
            };
            serve(config, demo::data_dir(data_dir)?, Some(options))
        }
    }
}

fn admin_request(args: &AdminArgs, request: &Request) -> anyhow::Result<serde_json::Value> {
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &Config::default())?;
    Ok(crate::app::admin::request(data_dir.path(), request)?)
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("json"));
}

fn print_provisioning(v: &serde_json::Value) {
    let s = |p: &str| {
        v.pointer(p)
            .map(|x| x.as_str().map(str::to_owned).unwrap_or(x.to_string()))
            .unwrap_or_default()
    };
    println!("device {}  ({}, {})", s("/id"), s("/profile"), s("/kind"));
    println!("  broker     mqtts://{}:{}", s("/mqtt/host"), s("/mqtt/port"));
    println!("  username   {}", s("/mqtt/username"));
    println!(
        "  password   {}   (shown once: hearth keeps only a hash)",
        s("/mqtt/password")
    );
    println!("  client id  {}", s("/mqtt/client_id"));
    println!("  CA file    {}", s("/mqtt/ca_cert"));
    let topics: Vec<String> = v["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    println!("  topics     {}", topics.join(", "));
}

fn devices(cmd: DevicesCommand) -> anyhow::Result<()> {
    match cmd {
        DevicesCommand::Add {
            profile,
            kind,
            nickname,
            room,
            topic,
            admin,
        } => {
            let request = Request::DevicesAdd(AddDevice {
                profile: Profile::parse(&profile).context("unknown profile")?,
                kind: DeviceKind::parse(&kind).context("unknown kind")?,
                nickname,
                room,
                topic,
            });
            let v = admin_request(&admin, &request)?;
            if admin.json {
                print_json(&v)
            } else {
                print_provisioning(&v)
            }
        }
        DevicesCommand::List(admin) => {
            let v = admin_request(&admin, &Request::DevicesList)?;
            if admin.json {
                print_json(&v);
            } else {
                println!(
                    "{:<32}  {:<8}  {:<11}  {:<10}  {:<7}  {:<20}  ROOM",
                    "ID", "STATUS", "KIND", "PROFILE", "ONLINE", "NICKNAME"
                );
                let mut flagged = 0;
                for d in v.as_array().into_iter().flatten() {
                    let s = |k: &str| d[k].as_str().unwrap_or("-").to_owned();
                    let online = if d["online"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    };
                    // An advert claimed this device from an address it was not adopted at.
                    let status = if d["flagged"].as_bool() == Some(true) {
                        flagged += 1;
                        format!("{}!", s("status"))
                    } else {
                        s("status")
                    };
                    println!(
                        "{:<32}  {:<8}  {:<11}  {:<10}  {:<7}  {:<20}  {}",
                        s("id"),
                        status,
                        s("kind"),
                        s("profile"),
                        online,
                        s("nickname"),
                        s("room")
                    );
                }
                if flagged > 0 {
                    println!(
                        "! {flagged} device(s) flagged: an mDNS advert claimed them from an address they were \
                         not adopted at. hearth did not follow it; check the device, then forget and re-adopt it \
                         if it really moved."
                    );
                }
            }
        }
        DevicesCommand::Forget { id, admin } => {
            let v = admin_request(&admin, &Request::DevicesForget { id: id.clone() })?;
            if admin.json {
                print_json(&v)
            } else {
                println!("forgot {id}: its credential is revoked and its session cut")
            }
        }
        DevicesCommand::Adopt {
            id,
            nickname,
            room,
            kind,
            admin,
        } => {
            let kind = kind
                .map(|k| DeviceKind::parse(&k).context("unknown kind"))
                .transpose()?;
            let v = admin_request(
                &admin,
                &Request::DevicesAdopt(crate::home::devices::Adopt {
                    id,
                    nickname,
                    room,
                    kind,
                }),
            )?;
            if admin.json {
                print_json(&v)
            } else {
                print_provisioning(&v)
            }
        }
        DevicesCommand::Rename {
            id,
            nickname,
            room,
            admin,
        } => {
            let v = admin_request(
                &admin,
                &Request::DevicesRename(crate::home::devices::Rename {
                    id: id.clone(),
                    nickname,
                    room,
                }),
            )?;
            if admin.json {
                print_json(&v)
            } else {
                println!("renamed {id}")
            }
        }
        DevicesCommand::Set { id, state, admin } => {
            let v = admin_request(
                &admin,
                &Request::DevicesSet {
                    id: id.clone(),
                    on: state == "on",
                },
            )?;
            if admin.json {
                print_json(&v)
            } else {
                println!("sent {state} to {id}")
            }
        }
        DevicesCommand::Expose {
            id,
            homeassistant,
            voice,
            voice_name,
            admin,
        } => {
            let on = |v: Option<String>| v.map(|v| v == "on");
            let v = admin_request(
                &admin,
                &Request::DevicesExpose(crate::app::admin::Expose {
                    id: id.clone(),
                    homeassistant: on(homeassistant),
                    voice: on(voice),
                    voice_name,
                }),
            )?;
            if admin.json {
                print_json(&v)
            } else {
                println!("updated {id}")
            }
        }
        DevicesCommand::Rotate { id, admin } => {
            let v = admin_request(&admin, &Request::DevicesRotate { id })?;
            if admin.json {
                print_json(&v)
            } else {
                print_provisioning(&v)
            }
        }
    }
    Ok(())
}

/// A progress bar on standard error: redrawn in place on a terminal, a
/// line per quarter otherwise.
struct Bar {
    what: &'static str,
    tty: bool,
    last: Option<u64>,
}

impl Bar {
    fn new(what: &'static str) -> Bar {
        use std::io::IsTerminal;
        Bar {
            what,
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, done: u64, total: u64) {
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
fn open_offline(data_dir: &DataDir, config: &Config) -> anyhow::Result<crate::store::Store> {
    if data_dir.state()? != crate::store::DirState::Store {
        return Err(StoreError::NotAStore {
            path: data_dir.path().to_path_buf(),
        }
        .into());
    }
    data_dir.check_permissions()?;
    Ok(crate::store::open_or_init(data_dir, config.key_file.as_deref())?)
}

fn keys_rewrap(args: &RunArgs, passphrase_file: Option<&Path>) -> anyhow::Result<()> {
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
fn open_offline_with(data_dir: &DataDir, file: &Path) -> anyhow::Result<crate::store::Store> {
    let kdf = crate::store::files::passphrase_kdf(&data_dir.db_path())?
        .ok_or_else(|| anyhow::anyhow!("the store is not in passphrase mode"))?;
    let passphrase = crate::store::files::read_passphrase(file)?;
    let master = crate::store::MasterKey::from_passphrase(passphrase.as_bytes(), &kdf)?;
    Ok(crate::store::Store::open(&data_dir.db_path(), &master, file)?)
}

/// Overwrites a key file with random bytes, syncs it, and removes it.
fn shred(path: &Path) -> anyhow::Result<()> {
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

fn keys_rotate(args: &RunArgs, json: bool) -> anyhow::Result<()> {
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

fn erase(args: &RunArgs, yes: bool) -> anyhow::Result<()> {
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
        "erased: {} data key(s) destroyed, master key {}, {} file(s) removed from {}",
        erased.data_keys_destroyed,
        match (&erased.master_key_removed, &erased.master_key_elsewhere) {
            (Some(p), _) => format!("overwritten and removed ({})", p.display()),
            (None, Some(p)) => format!(
                "at {} is a systemd credential: remove it from the unit (it opens nothing now)",
                p.display()
            ),
            _ => "not found".to_owned(),
        },
        erased.files_removed,
        data_dir.path().display()
    );
    for b in &erased.backups_removed {
        println!("backup overwritten and removed: {}", b.display());
    }
    Ok(())
}

/// A refused command line: exit 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn audit_verify(args: &AdminArgs) -> anyhow::Result<()> {
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &Config::default())?;
    let v = match crate::app::admin::request(data_dir.path(), &Request::AuditVerify) {
        Ok(v) => v,
        Err(crate::app::admin::AdminError::NotRunning { .. }) => {
            if data_dir.state()? != crate::store::DirState::Store {
                return Err(StoreError::NotAStore {
                    path: data_dir.path().to_path_buf(),
                }
                .into());
            }
            let store = open_offline(&data_dir, &Config::default())?;
            serde_json::to_value(store.verify_audit()?)?
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        print_json(&v);
    } else if v["problem"].is_null() {
        println!(
            "audit log verified: {} chained entries{}",
            v["entries"],
            match v["before_chain"].as_u64() {
                Some(n) if n > 0 => format!(", {n} older entries from before the chain began"),
                _ => String::new(),
            }
        );
    }
    if let Some(p) = v["problem"].as_object() {
        return Err(StoreError::Corrupt {
            path: data_dir.db_path(),
            detail: format!(
                "the audit log's chain breaks at entry {}: {}",
                p.get("entry").cloned().unwrap_or_default(),
                p.get("why").and_then(|w| w.as_str()).unwrap_or("")
            ),
        }
        .into());
    }
    Ok(())
}

fn relay(cmd: RelayCommand) -> anyhow::Result<()> {
    let (admin, request) = match cmd {
        RelayCommand::Enable(a) => (a, Request::RelayEnable),
        RelayCommand::Disable(a) => (a, Request::RelayDisable),
        RelayCommand::Status(a) => (a, Request::RelayStatus),
    };
    let v = admin_request(&admin, &request)?;
    if admin.json {
        print_json(&v);
    } else {
        match v["listening"].as_str() {
            Some(addr) => println!("voice relay on, listening on {addr}"),
            None if v["enabled"] == true => println!("voice relay enabled, but not listening: see the log"),
            None => println!("voice relay off: nothing listens"),
        }
    }
    Ok(())
}

fn homeassistant(cmd: HomeAssistantCommand) -> anyhow::Result<()> {
    let (admin, request) = match cmd {
        HomeAssistantCommand::Enable(a) => (a, Request::HomeassistantEnable),
        HomeAssistantCommand::Rotate(a) => (a, Request::HomeassistantRotate),
        HomeAssistantCommand::Disable(a) => (a, Request::HomeassistantDisable),
        HomeAssistantCommand::Status(a) => (a, Request::HomeassistantStatus),
        HomeAssistantCommand::Set {
            share_device_details,
            discovery,
            admin,
        } => {
            let discovery = discovery.map(|d| match d.as_str() {
                "component" => crate::home::homeassistant::DiscoveryMode::Component,
                "legacy" => crate::home::homeassistant::DiscoveryMode::Legacy,
                _ => crate::home::homeassistant::DiscoveryMode::Device,
            });
            let change = crate::home::homeassistant::SettingsChange {
                share_device_details: share_device_details.map(|v| v == "on"),
                discovery,
            };
            (admin, Request::HomeassistantSet(change))
        }
    };
    let v = admin_request(&admin, &request)?;
    if admin.json {
        print_json(&v);
        return Ok(());
    }
    if let Some(m) = v.get("mqtt") {
        let s = |k: &str| {
            m[k].as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m[k].to_string())
        };
        println!("In Home Assistant: Settings > Devices & services > Add integration > MQTT.");
        println!("  broker     {}", s("host"));
        println!("  port       {}", s("port"));
        println!("  username   {}", s("username"));
        println!(
            "  password   {}   (shown once; hearth keeps only a hash)",
            s("password")
        );
        println!("  TLS        on, with the CA certificate {}", s("ca_cert"));
        println!(
            "  discovery  on, prefix {}",
            v["discovery_prefix"].as_str().unwrap_or("?")
        );
    } else {
        print_fields(&v, "");
    }
    Ok(())
}

/// An answer as aligned `key  value` lines, nested objects indented: what
/// a person reads, where `--json` gives the same answer to a program.
fn print_fields(v: &serde_json::Value, indent: &str) {
    let Some(map) = v.as_object() else {
        println!("{indent}{}", scalar(v));
        return;
    };
    let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, value) in map {
        let label = k.replace('_', " ");
        if value.is_object() {
            println!("{indent}{label}");
            print_fields(value, &format!("{indent}  "));
        } else {
            println!("{indent}{label:<width$}  {}", scalar(value));
        }
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) => "yes".into(),
        serde_json::Value::Bool(false) => "no".into(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn status(args: &AdminArgs) -> anyhow::Result<()> {
    let v = admin_request(args, &Request::Status)?;
    if args.json {
        print_json(&v);
    } else {
        println!("hearth {} running", v["version"].as_str().unwrap_or("?"));
        println!("  mqtt tls    {}", v["mqtt_tls"]);
        println!("  mqtt plain  {}", v["mqtt_plain"]);
        println!("  CA file     {}", v["ca_cert"].as_str().unwrap_or("?"));
        println!("  devices     {}", v["devices"]);
        println!("  broker      {}", v["broker"]);
    }
    Ok(())
}

/// Binds MQTT listeners, so an address in use is reported before anything
/// starts.
fn bind_all(addrs: &[std::net::SocketAddr], key: &str) -> anyhow::Result<Vec<std::net::TcpListener>> {
    addrs
        .iter()
        .map(|addr| {
            std::net::TcpListener::bind(addr).map_err(|e| {
                anyhow::Error::from(app::DaemonError::Broker(crate::broker::BrokerError::Bind {
                    addr: *addr,
                    message: format!("{e}; change {key} or stop what uses the port"),
                }))
            })
        })
        .collect()
}

fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// Where the data lives: the flag, the config, systemd's `STATE_DIRECTORY`,
/// then a per-user default.
pub fn resolve_data_dir(flag: Option<&Path>, config: &Config) -> anyhow::Result<DataDir> {
    let path = if let Some(p) = flag {
        std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))?
    } else if let Some(p) = &config.data_dir {
        p.clone()
    } else if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may list several, colon-separated; ours is the first.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        PathBuf::from(first)
    } else if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/hearth")
    } else if let Some(state) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(state).join("hearth")
    } else {
        let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
        PathBuf::from(home).join(".local/state/hearth")
    };
    Ok(DataDir::new(path))
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    config.check_files()?;
    for w in config.warnings() {
        eprintln!("hearth: warning: {w}");
    }
    print!("{}", config.to_toml());
    Ok(())
}

fn init(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    telemetry::init(&config.log);
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    match crate::store::init(&data_dir, config.key_file.as_deref())? {
        InitOutcome::Created {
            key_path,
            key_written,
        } => {
            println!("initialised {}", data_dir.path().display());
            if key_written {
                println!(
                    "master key written to {} (mode 0600). Back it up somewhere safe: without it the store cannot be read.",
                    key_path.display()
                );
            } else {
                println!("using the existing master key {}", key_path.display());
            }
        }
        InitOutcome::AlreadyInitialised => {
            println!(
                "{} already holds a hearth store; nothing was changed",
                data_dir.path().display()
            );
        }
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    config.check_files()?;
    telemetry::init(&config.log);
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    serve(config, data_dir, None)
}

/// Runs the daemon on `data_dir` until a signal; with `demo`, also the
/// simulated home (`demo::run`).
fn serve(config: Config, data_dir: DataDir, demo: Option<demo::Options>) -> anyhow::Result<()> {
    let store = crate::store::open_or_init(&data_dir, config.key_file.as_deref())?;
    crate::supervisor::raise_nofile();
    crate::supervisor::return_large_blocks();
    let mqtt_tls = bind_all(&config.mqtt.tls_listen, "mqtt.tls_listen")?;
    let mqtt_plain = bind_all(&config.mqtt.plain_listen, "mqtt.plain_listen")?;
    let web = if config.web.enabled {
        bind_all(&config.web.listen, "web.listen")?
    } else {
        Vec::new()
    };

    let runtime = if config.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.worker_threads);
        b
    }
    .enable_all()
    .thread_name("hearth")
    .build()
    .context("cannot start the async runtime")?;
    let grace = config.shutdown_grace;
    let result = runtime.block_on(async move {
        let token = CancellationToken::new();
        let admin = crate::app::admin::bind(data_dir.path())?;
        let bound = app::Bound {
            mqtt_tls,
            mqtt_plain,
            admin,
            web,
        };
        let dir = data_dir.path().to_path_buf();
        // The demo's simulated firmware learns each credential that
        // adoption issues in process, never from a file or a log.
        let (issued, issued_rx) = match demo {
            Some(options) if options.firmware => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let mut daemon = tokio::spawn(app::run_with_tap(
            config,
            data_dir,
            store,
            bound,
            token.clone(),
            issued,
        ));
        if let Some(options) = demo {
            let token = token.clone();
            tokio::spawn(async move {
                if let Err(error) = demo::run(dir, token.clone(), options.leave_pending, issued_rx).await {
                    eprintln!("hearth demo: {error:#}");
                    token.cancel();
                }
            });
        }
        let signal = tokio::select! {
            s = stop_signal() => s.context("cannot install signal handlers")?,
            finished = &mut daemon => {
                // A task failed and stopped the daemon on its own.
                return finished.context("the daemon panicked")?.map_err(anyhow::Error::from);
            }
        };
        tracing::info!(?signal, "stop requested");
        token.cancel();
        // The supervisor enforces the grace for SIGTERM; SIGINT gets one second.
        let limit = match signal {
            StopSignal::Terminate => grace + Duration::from_secs(1),
            StopSignal::Interrupt => Duration::from_secs(1),
        };
        match tokio::time::timeout(limit, daemon).await {
            Ok(finished) => finished
                .context("the daemon panicked")?
                .map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::Error::from(SupervisorError::GraceExceeded {
                grace: limit,
                pending: vec!["daemon"],
            })),
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_follow_sysexits() {
        let config_err = anyhow::Error::from(ConfigError::Invalid {
            key: "k",
            problem: "p".into(),
            fix: "f".into(),
        });
        assert_eq!(exit_code(&config_err), ExitCode::Usage);
        let wrong_key = anyhow::Error::from(StoreError::WrongKey {
            key_path: "k".into(),
            db_path: "d".into(),
        });
        assert_eq!(exit_code(&wrong_key), ExitCode::NoPerm);
        let corrupt = anyhow::Error::from(StoreError::Corrupt {
            path: "d".into(),
            detail: "x".into(),
        })
        .context("while starting");
        assert_eq!(exit_code(&corrupt), ExitCode::DataErr);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), ExitCode::Software);
    }
}
