//! The Home Assistant connection: its status, turning it on and off,
//! rotating its password, and its settings.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, Body};
use crate::accounts::actor;

pub(super) fn homeassistant(app: &App) -> Result<&Arc<crate::home::homeassistant::HomeAssistant>, ApiError> {
    app.homeassistant.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this hearth runs no Home Assistant integration",
        )
    })
}

#[utoipa::path(get, path = "/api/integrations/homeassistant", responses((status = 200, description = "Whether the Home Assistant connection is on and connected, how many devices it sees, and its settings")))]
pub(super) async fn ha_status(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    let st = homeassistant(&app)?.status().await?;
    let mut v = serde_json::to_value(&st)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("ca_cert_url".into(), json!("/ca.pem"));
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/api/integrations/homeassistant/enable", responses((status = 200, description = "What to enter into Home Assistant's MQTT integration; the password is shown once"), (status = 400, description = "Already on: rotate instead")))]
pub(super) async fn ha_enable(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let c = homeassistant(&app)?.enable(actor(&session)).await?;
    Ok(Json(serde_json::to_value(&c).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?))
}

#[utoipa::path(post, path = "/api/integrations/homeassistant/rotate", responses((status = 200, description = "A new password, shown once; the old one is refused and its session cut")))]
pub(super) async fn ha_rotate(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let c = homeassistant(&app)?.rotate(actor(&session)).await?;
    Ok(Json(serde_json::to_value(&c).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?))
}

#[utoipa::path(post, path = "/api/integrations/homeassistant/disable", responses((status = 200, description = "Off: the credential revoked, the session cut, every device removed from Home Assistant")))]
pub(super) async fn ha_disable(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let was = homeassistant(&app)?.disable(actor(&session)).await?;
    Ok(Json(json!({ "was_enabled": was })))
}

#[utoipa::path(patch, path = "/api/integrations/homeassistant", responses((status = 200, description = "The settings, changed")))]
pub(super) async fn ha_settings(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<crate::home::homeassistant::SettingsChange>,
) -> Result<Json<crate::home::homeassistant::Settings>, ApiError> {
    Ok(Json(homeassistant(&app)?.set(b, actor(&session)).await?))
}
