//! The audit log: filtered reads, the export, the event types and the hash
//! chain's check. Read only: audit entries are written by the operations
//! they record. The dashboard's read carries names beside the raw actor
//! and detail; the export is the forensic record and stays raw.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::names::Names;
use super::{ApiError, App, Authed, off_thread};
use crate::accounts::AuthError;
use crate::store::AuditKind;

/// Which audit events to show.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Only this event type, such as `login_failed`.
    event: Option<String>,
    /// Only this outcome: `ok`, `refused` or `failed`.
    outcome: Option<String>,
    /// Only events at or after this Unix time (seconds).
    since: Option<u64>,
    /// Only events at or before this Unix time (seconds).
    until: Option<u64>,
    /// At most this many, newest first (1 to 10,000; 100 by default).
    limit: Option<usize>,
}

/// The events `q` asks for; with `named_for` (the caller's session id),
/// each also carries `actor_name` and `detail_named`.
fn audit_events(app: &App, q: &AuditQuery, named_for: Option<&str>) -> Result<Vec<Value>, ApiError> {
    if let Some(event) = q.event.as_deref()
        && AuditKind::parse(event).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown event type; GET /api/audit/types lists them",
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, crate::store::AUDIT_KEPT as usize);
    let filtered = q.event.is_some() || q.outcome.is_some() || q.since.is_some() || q.until.is_some();
    let read = if filtered {
        crate::store::AUDIT_KEPT as usize
    } else {
        limit
    };
    let (events, names) = app
        .devices_store(|store| {
            let names = named_for.map(|s| Names::load(store, s)).transpose()?;
            Ok((store.audit(read)?, names))
        })
        .map_err(AuthError::from)?;
    Ok(events
        .into_iter()
        .filter(|e| {
            let at = crate::accounts::unix_secs(e.at);
            q.event.as_ref().is_none_or(|v| *v == e.event)
                && q.outcome.as_ref().is_none_or(|v| *v == e.outcome)
                && q.since.is_none_or(|s| at >= s)
                && q.until.is_none_or(|u| at <= u)
        })
        .take(limit)
        .map(|e| {
            let mut v = json!({
                "seq": e.seq,
                "at": crate::accounts::unix_secs(e.at),
                "wording": AuditKind::parse(&e.event).map_or_else(|| e.event.clone(), |k| k.wording().to_owned()),
                "event": e.event,
                "actor": e.actor,
                "outcome": e.outcome,
                "detail": e.detail,
            });
            if let Some(n) = &names {
                v["actor_name"] = json!(n.actor(&e.actor));
                v["detail_named"] = json!(n.detail(&e.detail));
            }
            v
        })
        .collect())
}

#[utoipa::path(get, path = "/api/audit", params(AuditQuery), responses((status = 200, description = "Audit events, newest first, filtered by type and time; each with actor_name and detail_named, the actor and detail in the owner's words (devices by nickname), beside the raw actor and detail"), (status = 400, description = "An unknown or malformed filter")))]
pub(super) async fn audit(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    q: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(Json(Value::Array(audit_events(
        &app,
        &q,
        Some(session.id.as_str()),
    )?)))
}

#[utoipa::path(get, path = "/api/audit/types", responses((status = 200, description = "Every event type hearth writes to the audit log, with the words the dashboard shows for it")))]
pub(super) async fn audit_types(_session: Authed) -> Json<Value> {
    Json(Value::Array(
        AuditKind::ALL
            .iter()
            .map(|k| json!({ "event": k.name(), "wording": k.wording() }))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/audit/export", responses((status = 200, description = "Every audit event kept, oldest first, as a JSON file to download", content_type = "application/json")))]
pub(super) async fn audit_export(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Response, ApiError> {
    let mut all = audit_events(
        &app,
        &AuditQuery {
            limit: Some(crate::store::AUDIT_KEPT as usize),
            ..AuditQuery::default()
        },
        None,
    )?;
    all.reverse();
    let mut r = Json(Value::Array(all)).into_response();
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"hearth-audit.json\""),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/audit/verify", responses((status = 200, description = "Whether the audit log's hash chain is whole: the entries checked and, if it breaks, the first bad entry and why")))]
pub(super) async fn audit_verify(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    let auth = app.auth.clone();
    let verdict = off_thread(move || auth.with_store(|s| s.verify_audit()))
        .await?
        .map_err(AuthError::from)?;
    Ok(Json(json!({
        "verified": verdict.verified(),
        "entries": verdict.entries,
        "before_chain": verdict.before_chain,
        "problem": verdict.problem,
    })))
}
