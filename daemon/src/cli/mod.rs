//! The command line: argument parsing (clap), each command's glue, and the
//! mapping from errors to sysexits codes.
//!
//! This is one of the two places `anyhow` is allowed. It must not log or
//! print a secret; errors it prints come from modules that already redact.

mod ask;
mod backup;
mod daemon;
mod demo;
mod devices;
mod offline;

use self::ask::{audit_verify, dns, homeassistant, matter, relay, status};
pub use self::daemon::resolve_data_dir;
use self::daemon::{check_config, init, run, serve};
use self::devices::{devices, print_provisioning};
use self::offline::{Bar, erase, keys_rewrap, keys_rotate, open_offline};

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Pair hearth with a Matter controller (Apple Home, Google Home,
    /// Alexa, Home Assistant), on a running hearth with `[matter] enabled`.
    #[command(subcommand)]
    Matter(MatterCommand),
    /// The DNS resolver, on a running hearth with `[dns] enabled`: what each
    /// device looks up, and what it may (docs/dns.md).
    #[command(subcommand)]
    Dns(DnsCommand),
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
        /// Run the Matter bridge too, on this UDP port (Matter's own is
        /// 5540), as with `[matter] enabled = true`.
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        matter_port: Option<u16>,
        /// Run the DNS resolver too, on 127.0.0.1 at this port, as with
        /// `[dns] enabled = true` (devices added with `--address 127.0.0.x`
        /// are known by their queries).
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        dns_port: Option<u16>,
        /// The resolver the demo's DNS forwards to (default: /etc/resolv.conf's).
        #[arg(long, value_name = "ADDR", requires = "dns_port")]
        dns_upstream: Vec<std::net::SocketAddr>,
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
pub enum MatterCommand {
    /// Open pairing for 15 minutes (audited) and print the setup codes:
    /// the QR code, the 11-digit manual code and the QR code's `MT:` text.
    /// Pairing closes once a controller has joined.
    Pair {
        /// Close pairing now instead (audited), before its 15 minutes.
        #[arg(long)]
        close: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show how many controllers are paired and whether pairing is open.
    Status(AdminArgs),
    /// List the controllers (Matter fabrics) that joined: index, the label
    /// each set, vendor, and when hearth first saw it.
    Controllers(AdminArgs),
    /// Remove a controller (audited): it can no longer reach hearth, and
    /// its sessions end. Pair it again to bring it back.
    Remove {
        /// Its index, from `hearth matter controllers`.
        #[arg(value_parser = clap::value_parser!(u8).range(1..=254))]
        index: u8,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// The resolver's counts, and each adopted device's policy, queries and
    /// cloud domains (no names).
    Status(AdminArgs),
    /// The names one device looked up, most recent first, each with its
    /// count and the cloud it belongs to.
    Names {
        /// The device's id, from `hearth devices list`.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set what the resolver does for one device (audited): observe (the
    /// default), block-cloud (known cloud domains are answered as blocked),
    /// or lan-only (no name outside the LAN resolves).
    Policy {
        /// The device's id, from `hearth devices list`.
        id: String,
        #[arg(value_parser = ["observe", "block-cloud", "lan-only"])]
        policy: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The cloud domains hearth knows: the shipped list per vendor, with
    /// each one's source, and yours.
    Clouds(AdminArgs),
    /// Add one of your own cloud domains (audited); it and every name under
    /// it count as a cloud.
    CloudAdd {
        domain: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove one of your own cloud domains (audited).
    CloudRemove {
        domain: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
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
        /// Its LAN address (repeat for more, at most 8), so that the DNS
        /// resolver knows its queries (stored sealed).
        #[arg(long, value_name = "IP")]
        address: Vec<std::net::IpAddr>,
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
        Command::Matter(cmd) => matter(cmd),
        Command::Dns(cmd) => dns(cmd),
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
                    "  - voice link {}: {}, {} so far",
                    l["id"].as_str().unwrap_or(""),
                    count(&l["devices"], "device"),
                    count(&l["calls"], "call")
                );
            }
            println!(
                "  - {}",
                v["leaves_home"]["home_assistant"].as_str().unwrap_or("")
            );
            println!("  - {}", v["leaves_home"]["dns"].as_str().unwrap_or(""));
            println!("  - {}", v["matter"]["leaves_home"].as_str().unwrap_or(""));
            println!("DNS resolver:");
            println!("  {}", v["dns"]["what"].as_str().unwrap_or(""));
            println!("Matter bridge:");
            println!("  {}", v["matter"]["what"].as_str().unwrap_or(""));
            for c in v["matter"]["controllers"].as_array().into_iter().flatten() {
                let label = c["label"].as_str().filter(|l| !l.is_empty());
                println!(
                    "  - controller {} ({}), {}",
                    label
                        .map(|l| format!("\u{201c}{l}\u{201d}"))
                        .unwrap_or_else(|| "with no label".to_owned()),
                    c["vendor"].as_str().unwrap_or(""),
                    c["added"]
                        .as_i64()
                        .and_then(date)
                        .map(|d| format!("added {d}"))
                        .unwrap_or_else(|| "added before hearth kept dates".to_owned())
                );
            }
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
                    "lockdown: {} ended, {} revoked, Home Assistant password {}",
                    count(&v["sessions_ended"], "dashboard session"),
                    count(&v["relay_links_revoked"], "relay link"),
                    if v["homeassistant_password_revoked"] == true {
                        "revoked (rotate it to reconnect)"
                    } else {
                        "not in use"
                    }
                );
                match v["matter_controllers_removed"].as_u64() {
                    Some(0) | None => println!("lockdown: no Matter controller was paired"),
                    Some(_) => println!(
                        "lockdown: {} removed, and Matter pairing closed (pair a controller again with `hearth matter pair`)",
                        count(&v["matter_controllers_removed"], "Matter controller")
                    ),
                }
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
            matter_port,
            dns_port,
            dns_upstream,
        } => {
            let mut config = demo::config()?;
            if let Some(port) = matter_port {
                config.matter = crate::matter::MatterConfig { enabled: true, port };
            }
            if let Some(port) = dns_port {
                config.dns = crate::dns::DnsConfig {
                    enabled: true,
                    listen: vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
                    upstream: dns_upstream,
                    ..config.dns
                };
            }
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

/// A refused command line: exit 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A day, `2026-12-07`, from milliseconds since 1970 (UTC).
fn date(ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    Some(format!(
        "{}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    ))
}

/// "1 device", "3 devices": a count from an answer, with its noun.
fn count(n: &serde_json::Value, noun: &str) -> String {
    match n.as_u64() {
        Some(1) => format!("1 {noun}"),
        Some(n) => format!("{n} {noun}s"),
        None => format!("? {noun}s"),
    }
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
    #[test]
    fn matter_commands_parse_and_a_bad_index_is_refused() {
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["hearth", "matter"], args].concat());
        let close = parse(&["pair", "--close", "--json"]).unwrap();
        assert!(matches!(
            close.command,
            Command::Matter(MatterCommand::Pair {
                close: true,
                admin: AdminArgs { json: true, .. }
            })
        ));
        assert!(matches!(
            parse(&["pair"]).unwrap().command,
            Command::Matter(MatterCommand::Pair { close: false, .. })
        ));
        assert!(matches!(
            parse(&["remove", "3"]).unwrap().command,
            Command::Matter(MatterCommand::Remove { index: 3, .. })
        ));
        assert!(matches!(
            parse(&["controllers", "--json"]).unwrap().command,
            Command::Matter(MatterCommand::Controllers(AdminArgs { json: true, .. }))
        ));
        for bad in [
            &["remove", "0"][..],
            &["remove", "255"],
            &["remove", "x"],
            &["remove"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
