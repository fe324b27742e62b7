//! The DNS resolver on the dashboard: whether it is on (if not, how to turn
//! it on), its counts, each adopted device's "reaches out to" list and
//! policy, and the cloud domain lists.
//!
//! The names a device looked up are the owner's to see: they go into these
//! answers, never into a log line, a metric or a `Debug`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, Body};
use crate::accounts::actor;
use crate::dns::history::Policy;
use crate::dns::{Dns, DnsError};
use crate::home::devices::parse_id;

/// What the page says when `[dns]` is off.
const HOW_TO_ENABLE: &str = "Set enabled = true under [dns] in hearth.toml (with hearth's LAN address in listen, or hearth.socket for port 53) and restart hearth; then point your router's DHCP DNS option at hearth. docs/dns.md says how.";

fn dns(app: &App) -> Result<&Arc<Dns>, ApiError> {
    app.dns.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the DNS resolver is off. {HOW_TO_ENABLE}"),
        )
    })
}

impl From<DnsError> for ApiError {
    fn from(e: DnsError) -> ApiError {
        match e {
            DnsError::NoDevice => ApiError::new(StatusCode::NOT_FOUND, "no such adopted device"),
            DnsError::BadDomain(_) | DnsError::TooMany(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            e => {
                tracing::error!(error = %e, "dashboard DNS request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log")
            }
        }
    }
}

#[utoipa::path(get, path = "/api/dns", responses((status = 200, description = "Whether the resolver is on (if not, how to turn it on); its counts; each adopted device's policy, query count, cloud domains and whether it may use its own DNS (no names)")))]
pub(super) async fn dns_status(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    let Some(dns) = app.dns.as_ref() else {
        return Ok(Json(json!({ "enabled": false, "how_to_enable": HOW_TO_ENABLE })));
    };
    let mut v = serde_json::to_value(dns.status()).unwrap_or(Value::Null);
    v["devices"] = json!(dns.devices());
    v["policies"] = json!(Policy::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>());
    Ok(Json(v))
}

#[utoipa::path(get, path = "/api/devices/{id}/dns", params(("id" = String, Path, description = "The device's id")), responses((status = 200, description = "What the device looked up: each name with its count, how many were blocked, first and last seen, and the cloud it belongs to; its policy"), (status = 404, description = "No such adopted device, or the resolver is off")))]
pub(super) async fn device_dns(
    State(app): State<Arc<App>>,
    _session: Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dns = dns(&app)?;
    let id = parse_id(&id)?;
    let d = dns
        .device(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such adopted device"))?;
    Ok(Json(serde_json::to_value(d).unwrap_or(Value::Null)))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyBody {
    /// observe, block_cloud or lan_only.
    policy: String,
}

#[utoipa::path(put, path = "/api/devices/{id}/dns", params(("id" = String, Path, description = "The device's id")), request_body = PolicyBody, responses((status = 200, description = "The policy is set (audited); the device's DNS"), (status = 400, description = "Not a policy"), (status = 404, description = "No such adopted device, or the resolver is off")))]
pub(super) async fn device_policy(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Body(b): Body<PolicyBody>,
) -> Result<Json<Value>, ApiError> {
    let dns = dns(&app)?;
    let id = parse_id(&id)?;
    let policy = Policy::parse(&b.policy).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not a DNS policy: use observe, block_cloud or lan_only",
        )
    })?;
    dns.set_policy(&id, policy, actor(&session)).await?;
    device_dns(State(app.clone()), Authed(session), Path(id.to_string())).await
}

#[utoipa::path(get, path = "/api/dns/clouds", responses((status = 200, description = "The cloud domains hearth knows: the shipped list per vendor with each one's source, and the owner's")))]
pub(super) async fn clouds(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(dns(&app)?.cloud_lists()).unwrap_or(Value::Null),
    ))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DomainBody {
    domain: String,
}

#[utoipa::path(post, path = "/api/dns/clouds", request_body = DomainBody, responses((status = 200, description = "Added to the owner's cloud domains (audited); the lists"), (status = 400, description = "Not a domain, or the list is full")))]
pub(super) async fn cloud_add(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<DomainBody>,
) -> Result<Json<Value>, ApiError> {
    let dns = dns(&app)?;
    dns.change_cloud(&b.domain, true, actor(&session)).await?;
    Ok(Json(
        serde_json::to_value(dns.cloud_lists()).unwrap_or(Value::Null),
    ))
}

#[utoipa::path(delete, path = "/api/dns/clouds/{domain}", params(("domain" = String, Path, description = "One of the owner's domains")), responses((status = 200, description = "Removed (audited); the lists"), (status = 404, description = "Not one of the owner's domains")))]
pub(super) async fn cloud_remove(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dns = dns(&app)?;
    if !dns.change_cloud(&domain, false, actor(&session)).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not one of your cloud domains",
        ));
    }
    Ok(Json(
        serde_json::to_value(dns.cloud_lists()).unwrap_or(Value::Null),
    ))
}
