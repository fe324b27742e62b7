//! Commands that ask the running daemon through its admin socket and
//! print the answer: `status`, `audit verify`, `relay`, `matter`, `dns`,
//! `homeassistant`.

use super::{
    AdminArgs, Config, DnsCommand, HomeAssistantCommand, MatterCommand, RelayCommand, Request, StoreError,
    admin_request, open_offline, print_json, resolve_data_dir,
};

pub(super) fn audit_verify(args: &AdminArgs) -> anyhow::Result<()> {
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

pub(super) fn relay(cmd: RelayCommand) -> anyhow::Result<()> {
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

pub(super) fn matter(cmd: MatterCommand) -> anyhow::Result<()> {
    let (admin, request) = match cmd {
        MatterCommand::Pair { close: false, admin } => (admin, Request::MatterPair),
        MatterCommand::Pair { close: true, admin } => (admin, Request::MatterClose),
        MatterCommand::Status(a) => (a, Request::MatterStatus),
        MatterCommand::Controllers(a) => (a, Request::MatterControllers),
        MatterCommand::Remove { index, admin } => (admin, Request::MatterRemove { index }),
    };
    let v = admin_request(&admin, &request)?;
    if admin.json {
        print_json(&v);
    } else if let Some(list) = v["controllers"].as_array() {
        print_controllers(list);
    } else if v["removed"] == true {
        println!("controller removed: it can no longer reach hearth");
    } else if let Some(was_open) = v["was_open"].as_bool() {
        println!(
            "{}",
            if was_open {
                "Matter pairing closed"
            } else {
                "Matter pairing was not open"
            }
        );
    } else if let Some(code) = v["manual_code_pretty"].as_str() {
        let mins = v["open_secs"].as_u64().unwrap_or(0) / 60;
        let qr = v["qr"].as_str().unwrap_or("");
        let codes = crate::matter::Codes {
            manual: v["manual_code"].as_str().unwrap_or("").to_owned(),
            manual_pretty: code.to_owned(),
            qr: qr.to_owned(),
        };
        if qr.starts_with("MT:") {
            println!("{}", codes.qr_terminal());
        }
        println!(
            "Matter pairing is open for {mins} minutes. In your controller's app, add a Matter device and"
        );
        println!("enter the setup code {code}");
        println!("or use the QR code's text: {}", v["qr"].as_str().unwrap_or(""));
        println!("The controller will warn that the bridge is not certified (test vendor).");
    } else {
        println!(
            "Matter bridge on UDP port {}: {} bridged, {} paired; pairing {}",
            v["port"],
            super::count(&v["bridged"], "device"),
            super::count(&v["fabrics"], "controller"),
            if v["pairing_open"] == true {
                "open"
            } else {
                "closed"
            }
        );
    }
    Ok(())
}

pub(super) fn dns(cmd: DnsCommand) -> anyhow::Result<()> {
    let (admin, request) = match cmd {
        DnsCommand::Status(a) => (a, Request::DnsStatus),
        DnsCommand::Names { id, admin } => (admin, Request::DnsDevice { id }),
        DnsCommand::Policy { id, policy, admin } => (admin, Request::DnsPolicy { id, policy }),
        DnsCommand::Clouds(a) => (a, Request::DnsClouds),
        DnsCommand::CloudAdd { domain, admin } => (admin, Request::DnsCloud { domain, add: true }),
        DnsCommand::CloudRemove { domain, admin } => (admin, Request::DnsCloud { domain, add: false }),
    };
    let v = admin_request(&admin, &request)?;
    if admin.json {
        print_json(&v);
        return Ok(());
    }
    match request {
        Request::DnsStatus => {
            let s = &v["status"];
            let c = &s["counts"];
            println!(
                "DNS resolver on {}: {} queries from devices, {} from other clients; {} from the cache, {} forwarded, {} blocked, {} rate-limited",
                strings(&s["listening"]).join(", "),
                c["from_devices"],
                c["from_others"],
                c["cache_hits"],
                c["forwarded"],
                c["blocked"],
                c["rate_limited"],
            );
            for d in v["devices"].as_array().into_iter().flatten() {
                let clouds = strings(&d["clouds"]);
                println!(
                    "  {}  {:<12} {:>7} queries{}{}",
                    d["id"].as_str().unwrap_or(""),
                    d["policy"].as_str().unwrap_or(""),
                    d["queries"],
                    if clouds.is_empty() {
                        String::new()
                    } else {
                        format!("  clouds: {}", clouds.join(", "))
                    },
                    if d["may_use_own_dns"] == true {
                        "  (no queries seen: it may use its own DNS)"
                    } else {
                        ""
                    },
                );
            }
        }
        Request::DnsDevice { .. } => {
            println!(
                "policy: {}; {}",
                v["policy"].as_str().unwrap_or(""),
                match v["queries"].as_u64() {
                    Some(1) => "1 query".to_owned(),
                    n => format!("{} queries", n.unwrap_or(0)),
                }
            );
            if v["may_use_own_dns"] == true {
                println!(
                    "no queries seen: it may use its own DNS (docs/dns.md says how to redirect port 53)"
                );
            }
            for n in v["names"].as_array().into_iter().flatten() {
                let cloud = match (n["cloud"].as_str(), n["vendor"].as_str()) {
                    (Some(_), Some(vendor)) => format!("  {vendor} cloud"),
                    (Some(_), None) => "  cloud (your list)".into(),
                    _ => String::new(),
                };
                let blocked = match n["blocked"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(b) => format!(", {b} blocked"),
                };
                println!(
                    "  {:>7}x{blocked}  {}{cloud}",
                    n["count"],
                    n["name"].as_str().unwrap_or("")
                );
            }
        }
        Request::DnsPolicy { .. } => println!(
            "DNS policy {}{}",
            v["policy"].as_str().unwrap_or(""),
            if v["changed"] == true {
                ""
            } else {
                " (it already was)"
            }
        ),
        Request::DnsClouds => {
            for vendor in v["shipped"].as_array().into_iter().flatten() {
                let domains = strings(&vendor["domains"]);
                println!(
                    "{}: {}  (source: {})",
                    vendor["name"].as_str().unwrap_or(""),
                    domains.join(", "),
                    vendor["source"].as_str().unwrap_or("")
                );
            }
            let mine = strings(&v["owner"]);
            println!(
                "yours: {}",
                if mine.is_empty() {
                    "none".to_owned()
                } else {
                    mine.join(", ")
                }
            );
        }
        _ => println!(
            "{}",
            if v["changed"] == true {
                "changed"
            } else {
                "no change"
            }
        ),
    }
    Ok(())
}

/// A JSON array's strings.
fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .collect()
}

/// The controllers as a table: index, vendor, when added, label last (it
/// is the controller's own text, of any length).
fn print_controllers(list: &[serde_json::Value]) {
    if list.is_empty() {
        println!("no controller has joined; `hearth matter pair` opens pairing");
        return;
    }
    println!("{:<6} {:<16} {:<21} label", "index", "vendor", "added (UTC)");
    for c in list {
        let vendor = c["vendor"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("vendor {:#06x}", c["vendor_id"].as_u64().unwrap_or(0)));
        let added = c["added"]
            .as_i64()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| "-".into());
        let label = match c["label"].as_str() {
            Some(l) if !l.is_empty() => l,
            _ => "(unnamed)",
        };
        println!("{:<6} {vendor:<16} {added:<21} {label}", c["index"]);
    }
}

pub(super) fn homeassistant(cmd: HomeAssistantCommand) -> anyhow::Result<()> {
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
pub(super) fn print_fields(v: &serde_json::Value, indent: &str) {
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

pub(super) fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) => "yes".into(),
        serde_json::Value::Bool(false) => "no".into(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(super) fn status(args: &AdminArgs) -> anyhow::Result<()> {
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
