//! Google Smart Home fulfilment: SYNC, QUERY, EXECUTE and DISCONNECT over
//! one link's devices, with per-device errors.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use super::{Assistant, KELVIN_RANGE, Outcome, Relay, VoiceDevice, bearer, body_of, kelvin, mireds};
use crate::home::canonical::Command;
use crate::home::live::DeviceState;
use crate::store::relay::RelayLink;
use crate::store::{Actor, DeviceKind};

/// Devices one QUERY or EXECUTE may name.
const MAX_IDS: usize = 100;

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn unauthorized() -> Response<Body> {
    let mut res = reply(StatusCode::UNAUTHORIZED, json!({ "error": "invalid_token" }));
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    res
}

fn granted(link: &RelayLink, action: &str) -> bool {
    link.fields.actions.iter().any(|a| a == action)
}

fn sync_device(link: &RelayLink, d: &VoiceDevice) -> Value {
    let kind = match d.kind {
        DeviceKind::Bulb | DeviceKind::LightStrip => "action.devices.types.LIGHT",
        DeviceKind::Plug => "action.devices.types.OUTLET",
        _ => "action.devices.types.SWITCH",
    };
    let mut traits = Vec::new();
    let mut attributes = Map::new();
    if granted(link, "power") {
        traits.push("action.devices.traits.OnOff");
    }
    if granted(link, "brightness") && d.dims() {
        traits.push("action.devices.traits.Brightness");
    }
    if granted(link, "color_temp") && d.color_temp {
        traits.push("action.devices.traits.ColorSetting");
        attributes.insert(
            "colorTemperatureRange".into(),
            json!({ "temperatureMinK": KELVIN_RANGE.0, "temperatureMaxK": KELVIN_RANGE.1 }),
        );
    }
    json!({
        "id": d.id.as_str(),
        "type": kind,
        "traits": traits,
        // Google's SYNC schema requires all three; each is the voice name
        // alone, since a nickname or room would leave the house.
        "name": {
            "defaultNames": [d.voice_name],
            "name": d.voice_name,
            "nicknames": [d.voice_name],
        },
        "willReportState": false,
        "attributes": attributes,
    })
}

/// A device's state in QUERY and EXECUTE answers, for the granted traits.
fn states(link: &RelayLink, d: &VoiceDevice, s: &DeviceState) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("online".into(), s.online.into());
    if granted(link, "power")
        && let Some(p) = s.power
    {
        out.insert("on".into(), p.into());
    }
    if granted(link, "brightness")
        && d.dims()
        && let Some(b) = s.brightness
    {
        out.insert("brightness".into(), b.into());
    }
    if granted(link, "color_temp")
        && d.color_temp
        && let Some(m) = s.color_temp
    {
        out.insert("color".into(), json!({ "temperatureK": kelvin(m) }));
    }
    out
}

fn ids_of(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.get("id").and_then(Value::as_str))
                .take(MAX_IDS)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /google`.
pub async fn handle(State(relay): State<Arc<Relay>>, headers: HeaderMap, body: Body) -> Response<Body> {
    let token = bearer(&headers).unwrap_or("").to_owned();
    let link = match relay.link_of(&token, Assistant::Google).await {
        Ok(Some(link)) => link,
        Ok(None) => return unauthorized(),
        Err(_) => return super::bare(StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    if !relay.token_allowed(&token) {
        return super::bare(StatusCode::TOO_MANY_REQUESTS, Some("1"));
    }
    let raw = match body_of(body).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let parsed: Option<(String, String, Value)> = serde_json::from_slice::<Value>(&raw).ok().and_then(|v| {
        let request_id = v.get("requestId")?.as_str()?.to_owned();
        let input = v.get("inputs")?.as_array()?.first()?.clone();
        let intent = input.get("intent")?.as_str()?.to_owned();
        Some((
            request_id,
            intent,
            input.get("payload").cloned().unwrap_or(json!({})),
        ))
    });
    let Some((request_id, intent, payload)) = parsed else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "payload": { "errorCode": "protocolError" } }),
        );
    };
    if intent == "action.devices.DISCONNECT" {
        let _ = relay
            .revoke(
                &link.id,
                "the assistant disconnected",
                Actor::Link(link.id.to_string()),
            )
            .await;
        return reply(StatusCode::OK, json!({}));
    }
    let devices = {
        let (r, l) = (relay.clone(), link.clone());
        match tokio::task::spawn_blocking(move || r.devices_of(&l)).await {
            Ok(Ok(d)) => d,
            _ => return super::bare(StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    };
    let (payload, what) = match intent.as_str() {
        "action.devices.SYNC" => {
            let list: Vec<Value> = devices.iter().map(|d| sync_device(&link, d)).collect();
            let n = list.len();
            (
                json!({ "agentUserId": link.id.as_str(), "devices": list }),
                format!("SYNC: {n} device{}", if n == 1 { "" } else { "s" }),
            )
        }
        "action.devices.QUERY" => {
            let mut out = Map::new();
            let mut results = Vec::new();
            for id in ids_of(payload.get("devices")) {
                let entry = match devices.iter().find(|d| d.id.as_str() == id) {
                    None => {
                        results.push(format!("device {id} not found"));
                        json!({ "status": "ERROR", "errorCode": "deviceNotFound" })
                    }
                    Some(d) => match relay.state(&d.id).filter(|s| s.online) {
                        None => {
                            results.push(format!("device {id} offline"));
                            json!({ "online": false, "status": "OFFLINE", "errorCode": "deviceOffline" })
                        }
                        Some(s) => {
                            results.push(format!("device {id} ok"));
                            let mut m = states(&link, d, &s);
                            m.insert("status".into(), "SUCCESS".into());
                            Value::Object(m)
                        }
                    },
                };
                out.insert(id, entry);
            }
            (
                json!({ "devices": out }),
                format!("QUERY: {}", results.join(", ")),
            )
        }
        "action.devices.EXECUTE" => execute(&relay, &link, &devices, &payload).await,
        _ => (
            json!({ "errorCode": "notSupported" }),
            format!("{intent}: not supported"),
        ),
    };
    relay.audit(&link.id, format!("google {what}")).await;
    reply(
        StatusCode::OK,
        json!({ "requestId": request_id, "payload": payload }),
    )
}

enum Bad {
    NotSupported,
    OutOfRange,
}

fn command_of(execution: &Value) -> Result<Command, Bad> {
    let name = execution.get("command").and_then(Value::as_str).unwrap_or("");
    let params = execution.get("params").cloned().unwrap_or(json!({}));
    let mut c = Command::default();
    match name {
        "action.devices.commands.OnOff" => {
            c.power = Some(
                params
                    .get("on")
                    .and_then(Value::as_bool)
                    .ok_or(Bad::NotSupported)?,
            );
        }
        "action.devices.commands.BrightnessAbsolute" => {
            let b = params
                .get("brightness")
                .and_then(Value::as_i64)
                .ok_or(Bad::NotSupported)?;
            if !(0..=100).contains(&b) {
                return Err(Bad::OutOfRange);
            }
            c.brightness = Some(crate::home::vendor::to_255(b as u8));
        }
        "action.devices.commands.ColorAbsolute" => {
            let k = params
                .pointer("/color/temperature")
                .or_else(|| params.pointer("/color/temperatureK"))
                .and_then(Value::as_i64)
                .ok_or(Bad::NotSupported)?;
            if !(i64::from(KELVIN_RANGE.0)..=i64::from(KELVIN_RANGE.1)).contains(&k) {
                return Err(Bad::OutOfRange);
            }
            c.color_temp = Some(mireds(k as u32));
        }
        _ => return Err(Bad::NotSupported),
    }
    Ok(c)
}

async fn execute(
    relay: &Arc<Relay>,
    link: &RelayLink,
    devices: &[VoiceDevice],
    payload: &Value,
) -> (Value, String) {
    let mut commands = Vec::new();
    let mut results = Vec::new();
    let groups = payload
        .get("commands")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for group in groups.iter().take(MAX_IDS) {
        let ids = ids_of(group.get("devices"));
        let executions = group
            .get("execution")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for id in ids {
            let mut last: Option<Value> = None;
            for execution in executions.iter().take(8) {
                let name = execution.get("command").and_then(Value::as_str).unwrap_or("?");
                let short = name.rsplit('.').next().unwrap_or(name).to_owned();
                let entry = match command_of(execution) {
                    Err(Bad::NotSupported) => {
                        json!({ "ids": [id], "status": "ERROR", "errorCode": "functionNotSupported" })
                    }
                    Err(Bad::OutOfRange) => {
                        json!({ "ids": [id], "status": "ERROR", "errorCode": "valueOutOfRange" })
                    }
                    Ok(c) => match relay.command(link, devices, &id, c).await {
                        Outcome::Done(state, _) => {
                            let d = devices
                                .iter()
                                .find(|d| d.id.as_str() == id)
                                .expect("done means found");
                            json!({ "ids": [id], "status": "SUCCESS", "states": states(link, d, &state) })
                        }
                        Outcome::NotFound => {
                            json!({ "ids": [id], "status": "ERROR", "errorCode": "deviceNotFound" })
                        }
                        Outcome::NotAllowed => {
                            json!({ "ids": [id], "status": "ERROR", "errorCode": "functionNotSupported" })
                        }
                        Outcome::Offline => {
                            json!({ "ids": [id], "status": "OFFLINE", "errorCode": "deviceOffline" })
                        }
                        Outcome::OutOfRange => {
                            json!({ "ids": [id], "status": "ERROR", "errorCode": "valueOutOfRange" })
                        }
                        Outcome::Failed => {
                            json!({ "ids": [id], "status": "ERROR", "errorCode": "transientError" })
                        }
                    },
                };
                let status = entry
                    .get("errorCode")
                    .and_then(Value::as_str)
                    .unwrap_or("ok")
                    .to_owned();
                results.push(format!("device {id} {short}: {status}"));
                let failed = status != "ok";
                last = Some(entry);
                if failed {
                    break;
                }
            }
            if let Some(entry) = last {
                commands.push(entry);
            }
        }
    }
    (
        json!({ "commands": commands }),
        format!("EXECUTE: {}", results.join(", ")),
    )
}
