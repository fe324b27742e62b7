//! Alexa Smart Home, payload version 3: discovery, power, brightness,
//! colour temperature, state reports and the grant, over one link's
//! devices. Answers are `Alexa.Response` / `ErrorResponse` events; the
//! owner's skill function forwards directives here unchanged.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{Assistant, KELVIN_RANGE, Outcome, Relay, VoiceDevice, body_of, kelvin, mireds};
use crate::home::canonical::Command;
use crate::home::live::DeviceState;
use crate::store::DeviceKind;
use crate::store::relay::RelayLink;

/// How a colour temperature step moves, in kelvin.
const KELVIN_STEP: u32 = 500;

struct Directive {
    namespace: String,
    name: String,
    correlation: Option<String>,
    endpoint: Option<String>,
    payload: Value,
    token: Option<String>,
}

fn parse(body: &[u8]) -> Option<Directive> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let d = v.get("directive")?;
    let h = d.get("header")?;
    if h.get("payloadVersion")?.as_str()? != "3" {
        return None;
    }
    let payload = d.get("payload").cloned().unwrap_or(json!({}));
    let token = d
        .pointer("/endpoint/scope/token")
        .or_else(|| payload.pointer("/scope/token"))
        .or_else(|| payload.pointer("/grantee/token"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some(Directive {
        namespace: h.get("namespace")?.as_str()?.to_owned(),
        name: h.get("name")?.as_str()?.to_owned(),
        correlation: h
            .get("correlationToken")
            .and_then(Value::as_str)
            .map(str::to_owned),
        endpoint: d
            .pointer("/endpoint/endpointId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        payload,
        token,
    })
}

fn message_id() -> String {
    let hex = crate::store::secret::random_token(128)
        .map(|t| t.expose().to_owned())
        .unwrap_or_else(|_| "0".repeat(32));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 3339 in UTC with exactly milliseconds, `2026-12-06T12:00:00.123Z`:
/// Amazon's message schema allows at most three fractional digits, and
/// time's own RFC 3339 form writes nine.
fn now_iso() -> String {
    iso_millis(time::OffsetDateTime::now_utc())
}

fn iso_millis(at: time::OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn header(namespace: &str, name: &str, correlation: Option<&str>) -> Value {
    let mut h = json!({
        "namespace": namespace,
        "name": name,
        "payloadVersion": "3",
        "messageId": message_id(),
    });
    if let Some(c) = correlation {
        h["correlationToken"] = c.into();
    }
    h
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn error(d: Option<&Directive>, kind: &str, message: &str, extra: Option<Value>) -> Response<Body> {
    let mut payload = json!({ "type": kind, "message": message });
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            payload[k] = v;
        }
    }
    let mut event = json!({
        "header": header("Alexa", "ErrorResponse", d.and_then(|d| d.correlation.as_deref())),
        "payload": payload,
    });
    if let Some(id) = d.and_then(|d| d.endpoint.as_deref()) {
        event["endpoint"] = json!({ "endpointId": id });
    }
    let status = if d.is_none() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    reply(status, json!({ "event": event }))
}

fn granted(link: &RelayLink, action: &str) -> bool {
    link.fields.actions.iter().any(|a| a == action)
}

fn interface(name: &str, property: &str) -> Value {
    json!({
        "type": "AlexaInterface",
        "interface": name,
        "version": "3",
        "properties": {
            "supported": [{ "name": property }],
            "proactivelyReported": false,
            "retrievable": true,
        },
    })
}

fn endpoint(link: &RelayLink, d: &VoiceDevice) -> Value {
    let (category, description) = match d.kind {
        DeviceKind::Bulb | DeviceKind::LightStrip => ("LIGHT", "Light connected through hearth"),
        DeviceKind::Plug => ("SMARTPLUG", "Plug connected through hearth"),
        _ => ("SWITCH", "Device connected through hearth"),
    };
    let mut caps = vec![json!({ "type": "AlexaInterface", "interface": "Alexa", "version": "3" })];
    if granted(link, "power") {
        caps.push(interface("Alexa.PowerController", "powerState"));
    }
    if granted(link, "brightness") && d.dims() {
        caps.push(interface("Alexa.BrightnessController", "brightness"));
    }
    if granted(link, "color_temp") && d.color_temp {
        caps.push(interface(
            "Alexa.ColorTemperatureController",
            "colorTemperatureInKelvin",
        ));
    }
    caps.push(interface("Alexa.EndpointHealth", "connectivity"));
    json!({
        "endpointId": d.id.as_str(),
        "manufacturerName": "hearth",
        "description": description,
        "friendlyName": d.voice_name,
        "displayCategories": [category],
        "capabilities": caps,
    })
}

/// The context properties of a device's state, for the interfaces the
/// link was granted. `certain` is false when the device has not yet
/// confirmed a command.
fn properties(link: &RelayLink, d: &VoiceDevice, s: &DeviceState, certain: bool) -> Value {
    let at = now_iso();
    let uncertainty = if certain {
        0
    } else {
        super::CONFIRM_WAIT.as_millis() as u64
    };
    let prop = |namespace: &str, name: &str, value: Value| {
        json!({
            "namespace": namespace,
            "name": name,
            "value": value,
            "timeOfSample": at,
            "uncertaintyInMilliseconds": uncertainty,
        })
    };
    let mut out = Vec::new();
    if granted(link, "power")
        && let Some(p) = s.power
    {
        out.push(prop(
            "Alexa.PowerController",
            "powerState",
            (if p { "ON" } else { "OFF" }).into(),
        ));
    }
    if granted(link, "brightness")
        && d.dims()
        && let Some(b) = s.brightness
    {
        out.push(prop("Alexa.BrightnessController", "brightness", b.into()));
    }
    if granted(link, "color_temp")
        && d.color_temp
        && let Some(m) = s.color_temp
    {
        out.push(prop(
            "Alexa.ColorTemperatureController",
            "colorTemperatureInKelvin",
            kelvin(m).into(),
        ));
    }
    let health = if s.online { "OK" } else { "UNREACHABLE" };
    out.push(prop(
        "Alexa.EndpointHealth",
        "connectivity",
        json!({ "value": health }),
    ));
    Value::Array(out)
}

fn response(d: &Directive, name: &str, namespace: &str, props: Value) -> Response<Body> {
    reply(
        StatusCode::OK,
        json!({
            "event": {
                "header": header(namespace, name, d.correlation.as_deref()),
                "endpoint": { "endpointId": d.endpoint.as_deref().unwrap_or("") },
                "payload": {},
            },
            "context": { "properties": props },
        }),
    )
}

/// `POST /alexa`.
pub async fn handle(State(relay): State<Arc<Relay>>, body: Body) -> Response<Body> {
    let raw = match body_of(body).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let Some(d) = parse(&raw) else {
        return error(None, "INVALID_DIRECTIVE", "the directive cannot be read", None);
    };
    let token = d.token.clone().unwrap_or_default();
    let link = match relay.link_of(&token, Assistant::Alexa).await {
        Ok(Some(link)) => link,
        Ok(None) => {
            return error(
                Some(&d),
                "INVALID_AUTHORIZATION_CREDENTIAL",
                "the access token is not valid",
                None,
            );
        }
        Err(_) => {
            return error(
                Some(&d),
                "INTERNAL_ERROR",
                "hearth could not read its links",
                None,
            );
        }
    };
    if !relay.token_allowed(&token) {
        return error(Some(&d), "RATE_LIMIT_EXCEEDED", "too many requests", None);
    }
    let devices = {
        let (r, l) = (relay.clone(), link.clone());
        match tokio::task::spawn_blocking(move || r.devices_of(&l)).await {
            Ok(Ok(d)) => d,
            _ => {
                return error(
                    Some(&d),
                    "INTERNAL_ERROR",
                    "hearth could not read its devices",
                    None,
                );
            }
        }
    };
    let (res, what) = dispatch(&relay, &link, &devices, &d).await;
    relay.audit(&link.id, format!("alexa {}", what)).await;
    res
}

async fn dispatch(
    relay: &Arc<Relay>,
    link: &RelayLink,
    devices: &[VoiceDevice],
    d: &Directive,
) -> (Response<Body>, String) {
    let target = d.endpoint.clone().unwrap_or_default();
    let named = |what: &str, result: &str| format!("{} device {target} {what}: {result}", d.name);
    match (d.namespace.as_str(), d.name.as_str()) {
        ("Alexa.Discovery", "Discover") => {
            let endpoints: Vec<Value> = devices.iter().map(|v| endpoint(link, v)).collect();
            let n = endpoints.len();
            let res = reply(
                StatusCode::OK,
                json!({
                    "event": {
                        "header": header("Alexa.Discovery", "Discover.Response", None),
                        "payload": { "endpoints": endpoints },
                    }
                }),
            );
            (
                res,
                format!("Discover: {n} device{}", if n == 1 { "" } else { "s" }),
            )
        }
        ("Alexa.Authorization", "AcceptGrant") => {
            // hearth sends no proactive events, so the grant's code is not
            // exchanged: nothing leaves the house unasked.
            let res = reply(
                StatusCode::OK,
                json!({
                    "event": {
                        "header": header("Alexa.Authorization", "AcceptGrant.Response", None),
                        "payload": {},
                    }
                }),
            );
            (res, "AcceptGrant: acknowledged".into())
        }
        ("Alexa", "ReportState") => {
            let Some(v) = devices.iter().find(|v| v.id.as_str() == target) else {
                return (
                    error(Some(d), "NO_SUCH_ENDPOINT", "no such device in this link", None),
                    named("state", "no such endpoint"),
                );
            };
            match relay.state(&v.id).filter(|s| s.online) {
                Some(s) => (
                    response(d, "StateReport", "Alexa", properties(link, v, &s, true)),
                    named("state", "ok"),
                ),
                None => (
                    error(Some(d), "ENDPOINT_UNREACHABLE", "the device is offline", None),
                    named("state", "unreachable"),
                ),
            }
        }
        (ns, name) => {
            let Some(v) = devices.iter().find(|v| v.id.as_str() == target) else {
                return (
                    error(Some(d), "NO_SUCH_ENDPOINT", "no such device in this link", None),
                    named("command", "no such endpoint"),
                );
            };
            let current = relay.state(&v.id);
            let command = match command_of(ns, name, &d.payload, current.as_ref()) {
                Ok(c) => c,
                Err(CommandError::Unknown) => {
                    return (
                        error(
                            Some(d),
                            "INVALID_DIRECTIVE",
                            "this directive is not supported",
                            None,
                        ),
                        named("directive", "invalid"),
                    );
                }
                Err(CommandError::Range(min, max)) => {
                    let extra = json!({ "validRange": { "minimumValue": min, "maximumValue": max } });
                    return (
                        error(
                            Some(d),
                            "VALUE_OUT_OF_RANGE",
                            "the value is out of range",
                            Some(extra),
                        ),
                        named("command", "out of range"),
                    );
                }
            };
            let outcome = relay.command(link, devices, &target, command).await;
            match outcome {
                Outcome::Done(state, confirmed) => (
                    response(d, "Response", "Alexa", properties(link, v, &state, confirmed)),
                    named("command", if confirmed { "ok" } else { "sent, unconfirmed" }),
                ),
                Outcome::NotFound => (
                    error(Some(d), "NO_SUCH_ENDPOINT", "no such device in this link", None),
                    named("command", "no such endpoint"),
                ),
                Outcome::NotAllowed => (
                    error(
                        Some(d),
                        "INVALID_DIRECTIVE",
                        "this link may not do that to this device",
                        None,
                    ),
                    named("command", "not allowed"),
                ),
                Outcome::Offline => (
                    error(Some(d), "ENDPOINT_UNREACHABLE", "the device is offline", None),
                    named("command", "unreachable"),
                ),
                Outcome::OutOfRange => (
                    error(Some(d), "VALUE_OUT_OF_RANGE", "the value is out of range", None),
                    named("command", "out of range"),
                ),
                Outcome::Failed => (
                    error(Some(d), "INTERNAL_ERROR", "the command could not be sent", None),
                    named("command", "failed"),
                ),
            }
        }
    }
}

enum CommandError {
    Unknown,
    Range(u32, u32),
}

/// The canonical command a directive asks for.
fn command_of(
    ns: &str,
    name: &str,
    payload: &Value,
    current: Option<&DeviceState>,
) -> Result<Command, CommandError> {
    let int = |key: &str| payload.get(key).and_then(Value::as_i64);
    let mut c = Command::default();
    match (ns, name) {
        ("Alexa.PowerController", "TurnOn") => c.power = Some(true),
        ("Alexa.PowerController", "TurnOff") => c.power = Some(false),
        ("Alexa.BrightnessController", "SetBrightness") => {
            let b = int("brightness").ok_or(CommandError::Unknown)?;
            if !(0..=100).contains(&b) {
                return Err(CommandError::Range(0, 100));
            }
            c.brightness = Some(crate::home::vendor::to_255(b as u8));
        }
        ("Alexa.BrightnessController", "AdjustBrightness") => {
            let delta = int("brightnessDelta").ok_or(CommandError::Unknown)?;
            if !(-100..=100).contains(&delta) {
                return Err(CommandError::Range(0, 100));
            }
            let now = current.and_then(|s| s.brightness).unwrap_or(0) as i64;
            c.brightness = Some(crate::home::vendor::to_255((now + delta).clamp(0, 100) as u8));
        }
        ("Alexa.ColorTemperatureController", "SetColorTemperature") => {
            let k = int("colorTemperatureInKelvin").ok_or(CommandError::Unknown)?;
            if !(i64::from(KELVIN_RANGE.0)..=i64::from(KELVIN_RANGE.1)).contains(&k) {
                return Err(CommandError::Range(KELVIN_RANGE.0, KELVIN_RANGE.1));
            }
            c.color_temp = Some(mireds(k as u32));
        }
        (
            "Alexa.ColorTemperatureController",
            step @ ("IncreaseColorTemperature" | "DecreaseColorTemperature"),
        ) => {
            let now = current.and_then(|s| s.color_temp).map(kelvin).unwrap_or(4000);
            let k = if step.starts_with("Increase") {
                now + KELVIN_STEP
            } else {
                now.saturating_sub(KELVIN_STEP)
            };
            c.color_temp = Some(mireds(k.clamp(KELVIN_RANGE.0, KELVIN_RANGE.1)));
        }
        _ => return Err(CommandError::Unknown),
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_carry_exactly_milliseconds_in_utc() {
        // 2026-12-06T12:00:00.123456789Z, seen from UTC+1.
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_558_400_123_456_789)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(iso_millis(at), "2026-12-06T12:00:00.123Z");
        let whole = time::OffsetDateTime::from_unix_timestamp(1_767_323_045).unwrap();
        assert_eq!(iso_millis(whole), "2026-01-02T03:04:05.000Z");
    }
}
