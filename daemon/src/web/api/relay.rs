//! The voice relay's page: turning it on and off, registering and removing
//! assistant clients, and revoking account links.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, Body, off_thread};
use crate::accounts::actor;

fn relay(app: &App) -> Result<&Arc<crate::relay::Relay>, ApiError> {
    app.relay
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this hearth runs no voice relay"))
}

/// The relay's state, clients and links, for the Voice page.
pub(super) async fn relay_view(app: &App) -> Result<Value, ApiError> {
    let relay = relay(app)?.clone();
    let r = relay.clone();
    let (enabled, clients, links, offered, voice_names) = off_thread(move || {
        let enabled = r.enabled_setting()?;
        let (clients, links) = r.with_store_sync(|s| Ok((s.relay_clients()?, s.relay_links()?)))?;
        let offered = r.offerable()?;
        let names: std::collections::HashMap<_, _> = offered
            .iter()
            .map(|d| (d.id.clone(), d.voice_name.clone()))
            .collect();
        Ok::<_, crate::store::StoreError>((enabled, clients, links, offered.len(), names))
    })
    .await??;
    let client_name = |id: &crate::store::RelayClientId| {
        clients
            .iter()
            .find(|c| &c.id == id)
            .map(|c| c.fields.name.clone())
            .unwrap_or_default()
    };
    let config = relay.config();
    Ok(json!({
        "enabled": enabled,
        "listening": relay.listening().map(|a| a.to_string()),
        "listen": config.listen.to_string(),
        "tls": config.tls.is_some(),
        "offerable_devices": offered,
        "redirect_templates": {
            "alexa": crate::relay::ALEXA_REDIRECTS,
            "google": crate::relay::GOOGLE_REDIRECTS,
        },
        "clients": clients.iter().map(|c| json!({
            "id": c.id,
            "name": c.fields.name,
            "assistant": c.fields.assistant,
            "redirect_uris": c.fields.redirect_uris,
            "created_at": c.fields.created_at / 1000,
        })).collect::<Vec<_>>(),
        "links": links.iter().map(|l| json!({
            "id": l.id,
            "client_id": l.client_id,
            "client_name": client_name(&l.client_id),
            "devices": l.devices.iter().map(|d| json!({
                "id": d,
                "voice_name": voice_names.get(d),
            })).collect::<Vec<_>>(),
            "actions": l.fields.actions,
            "calls": l.calls,
            "created_at": l.fields.created_at / 1000,
        })).collect::<Vec<_>>(),
    }))
}

#[utoipa::path(get, path = "/api/relay", responses((status = 200, description = "Whether the voice relay is on and where it listens, its registered clients and its account links with their call counts")))]
pub(super) async fn relay_status(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(relay_view(&app).await?))
}

#[utoipa::path(post, path = "/api/relay/enable", responses((status = 200, description = "On: the relay listens"), (status = 400, description = "Two-factor authentication is off"), (status = 409, description = "The relay's address is taken or its TLS files do not load")))]
pub(super) async fn relay_enable(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    // The rule lives in Relay::may_enable, which the CLI's door shares.
    off_thread(move || r.set_enabled(true, actor(&session))).await??;
    Ok(Json(relay_view(&app).await?))
}

#[utoipa::path(post, path = "/api/relay/disable", responses((status = 200, description = "Off: nothing listens; links and tokens are kept")))]
pub(super) async fn relay_disable(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    off_thread(move || r.set_enabled(false, actor(&session))).await??;
    Ok(Json(relay_view(&app).await?))
}

#[utoipa::path(post, path = "/api/relay/clients", request_body = crate::relay::NewClient, responses((status = 200, description = "The client id and its secret, shown once"), (status = 400, description = "A bad name, assistant or redirect URI")))]
pub(super) async fn relay_register(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<crate::relay::NewClient>,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    let (client, secret) = off_thread(move || r.register_client(b, actor(&session))).await??;
    Ok(Json(json!({
        "client_id": client.id,
        "client_secret": secret.expose(),
        "authorize_path": "/oauth/authorize",
        "token_path": "/oauth/token",
    })))
}

#[utoipa::path(delete, path = "/api/relay/clients/{id}", params(("id" = String, Path, description = "The client id")), responses((status = 200, description = "Deleted, with every link and token it had"), (status = 404, description = "No such client")))]
pub(super) async fn relay_unregister(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    let id = crate::store::RelayClientId::parse(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such client"))?;
    if !r.delete_client(&id, actor(&session)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such client"));
    }
    Ok(Json(json!({ "deleted": true })))
}

#[utoipa::path(delete, path = "/api/relay/links/{id}", params(("id" = String, Path, description = "The link id")), responses((status = 200, description = "Revoked: its tokens stop working at once"), (status = 404, description = "No such link")))]
pub(super) async fn relay_revoke(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    let id = crate::store::LinkId::parse(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such link"))?;
    if !r.revoke(&id, "revoked by the owner", actor(&session)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such link"));
    }
    Ok(Json(json!({ "revoked": true })))
}
