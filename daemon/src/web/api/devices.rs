//! Devices: the list with live state, adopting, ignoring, changing,
//! commanding, rotating and forgetting. Each operation is one call into
//! `home::devices::Devices`, which both the dashboard and the admin socket
//! use.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, Body};
use crate::accounts::actor;
use crate::home::devices::{DeviceSummary, Update, parse_id};

#[utoipa::path(get, path = "/api/devices", responses((status = 200, description = "Adopted and pending devices, with live state")))]
pub(super) async fn devices(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Vec<DeviceSummary>>, ApiError> {
    Ok(Json(app.devices.list().await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AdoptBody {
    nickname: String,
    #[serde(default)]
    room: Option<String>,
    /// What it is, when discovery guessed wrong or could not tell.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    kind: Option<crate::store::DeviceKind>,
}

pub(super) async fn provisioning_json(
    app: &App,
    p: crate::home::devices::Provisioning,
) -> Result<Json<Value>, ApiError> {
    let mut v = serde_json::to_value(&p)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let pem = tokio::fs::read_to_string(&app.ca_cert).await.unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("ca_pem".into(), json!(pem));
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/api/devices/{id}/adopt", request_body = AdoptBody, responses((status = 200, description = "Adopted; the provisioning details, shown once")))]
pub(super) async fn adopt(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Body(b): Body<AdoptBody>,
) -> Result<Json<Value>, ApiError> {
    let p = app
        .devices
        .adopt(
            crate::home::devices::Adopt {
                id: id.clone(),
                nickname: b.nickname,
                room: b.room.filter(|r| !r.is_empty()),
                kind: b.kind,
            },
            actor(&session),
        )
        .await?;
    provisioning_json(&app, p).await
}

#[utoipa::path(post, path = "/api/devices/{id}/ignore", responses((status = 204, description = "The pending device is dropped")))]
pub(super) async fn ignore(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if app.devices.ignore(&id, actor(&session)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such device"))
    }
}

#[utoipa::path(patch, path = "/api/devices/{id}", responses((status = 200, description = "The device, updated")))]
pub(super) async fn update(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Body(b): Body<Update>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    app.devices.update(&id, b, actor(&session)).await?;
    let list = app.devices.list().await?;
    list.into_iter()
        .find(|d| d.id == id)
        .map(|d| Json(serde_json::to_value(d).unwrap_or(Value::Null)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such device"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandBody {
    #[serde(default)]
    power: Option<bool>,
    #[serde(default)]
    brightness: Option<u8>,
    /// Colour temperature in mireds (153 to 500), for lights whose
    /// firmware takes one.
    #[serde(default)]
    color_temp: Option<u16>,
}

#[utoipa::path(post, path = "/api/devices/{id}/command", request_body = CommandBody, responses((status = 202, description = "Sent to the device")))]
pub(super) async fn command(
    State(app): State<Arc<App>>,
    _session: Authed,
    Path(id): Path<String>,
    Body(b): Body<CommandBody>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    app.devices
        .control(&id, b.power, b.brightness, b.color_temp)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(post, path = "/api/devices/{id}/rotate", responses((status = 200, description = "A new credential, shown once; the old one is refused")))]
pub(super) async fn rotate(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let parsed = parse_id(&id)?;
    let p = app.devices.rotate(&parsed, actor(&session)).await?;
    provisioning_json(&app, p).await
}

#[utoipa::path(delete, path = "/api/devices/{id}", responses((status = 204, description = "Forgotten: credential revoked, session cut, sealed data erased")))]
pub(super) async fn forget(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let parsed = parse_id(&id)?;
    if !app.devices.forget(&parsed, actor(&session)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such device"));
    }
    Ok(StatusCode::NO_CONTENT)
}
