//! `hearth devices`: add, list, adopt, rename, set, ignore, forget and
//! rotate, through the running daemon's admin socket.

use anyhow::Context;

use super::{AddDevice, DeviceKind, DevicesCommand, Profile, Request, admin_request, print_json};

pub(super) fn print_provisioning(v: &serde_json::Value) {
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

pub(super) fn devices(cmd: DevicesCommand) -> anyhow::Result<()> {
    match cmd {
        DevicesCommand::Add {
            profile,
            kind,
            nickname,
            room,
            topic,
            address,
            admin,
        } => {
            let request = Request::DevicesAdd(AddDevice {
                profile: Profile::parse(&profile).context("unknown profile")?,
                kind: DeviceKind::parse(&kind).context("unknown kind")?,
                nickname,
                room,
                topic,
                addresses: address,
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
                    "{:<32}  {:<8}  {:<11}  {:<10}  {:<7}  {:<14}  {:<20}  ROOM",
                    "ID", "STATUS", "KIND", "PROFILE", "ONLINE", "STATE", "NICKNAME"
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
                        "{:<32}  {:<8}  {:<11}  {:<10}  {:<7}  {:<14}  {:<20}  {}",
                        s("id"),
                        status,
                        s("kind"),
                        s("profile"),
                        online,
                        reported(d),
                        s("nickname"),
                        s("room")
                    );
                }
                if flagged > 0 {
                    let (noun, them, were) = if flagged == 1 {
                        ("device", "it", "was")
                    } else {
                        ("devices", "them", "were")
                    };
                    println!(
                        "! {flagged} {noun} flagged: an mDNS advert claimed {them} from an address {them} {were} \
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

/// What a listed device last reported, in a few words: `on 40% 300m`
/// (brightness, then colour temperature in mireds), `open`, `wet`,
/// `21.5°C 40%RH`; `-` until it has reported anything.
fn reported(d: &serde_json::Value) -> String {
    let mut words = Vec::new();
    match d["power"].as_bool() {
        Some(true) => words.push("on".to_owned()),
        Some(false) => words.push("off".to_owned()),
        None => {}
    }
    if let Some(b) = d["brightness"].as_u64() {
        words.push(format!("{b}%"));
    }
    if let Some(m) = d["color_temp"].as_u64() {
        words.push(format!("{m}m"));
    }
    if let Some(open) = d["open"].as_bool() {
        words.push(if open { "open" } else { "closed" }.to_owned());
    }
    if let Some(water) = d["water"].as_bool() {
        words.push(if water { "wet" } else { "dry" }.to_owned());
    }
    if let Some(t) = d["temperature"].as_i64() {
        words.push(format!("{:.1}°C", t as f64 / 10.0));
    }
    if let Some(h) = d["humidity"].as_u64() {
        words.push(format!("{:.0}%RH", h as f64 / 10.0));
    }
    if words.is_empty() {
        "-".to_owned()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn what_a_device_reported_reads_in_a_few_words() {
        assert_eq!(super::reported(&json!({ "power": null })), "-");
        assert_eq!(
            super::reported(&json!({ "power": true, "brightness": 40, "color_temp": 300 })),
            "on 40% 300m"
        );
        assert_eq!(super::reported(&json!({ "power": false })), "off");
        assert_eq!(super::reported(&json!({ "open": true })), "open");
        assert_eq!(super::reported(&json!({ "water": false })), "dry");
        assert_eq!(
            super::reported(&json!({ "temperature": 215, "humidity": 404 })),
            "21.5°C 40%RH"
        );
    }
}
