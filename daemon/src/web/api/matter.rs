//! The Matter bridge on the Integrations page: whether it is on, pairing
//! opened and closed by the owner (with the setup codes and their QR code
//! while it is open, and only then), and the controllers that joined.
//!
//! The codes and a controller's label are the owner's to see: they go into
//! answers, never into a log line or a `Debug`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, App, Authed};
use crate::accounts::actor;
use crate::matter::{Matter, MatterError};

/// What the page says when `[matter]` is off.
const HOW_TO_ENABLE: &str = "Set enabled = true under [matter] in hearth.toml and restart hearth.";

fn matter(app: &App) -> Result<&Arc<Matter>, ApiError> {
    app.matter.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the Matter bridge is off. {HOW_TO_ENABLE}"),
        )
    })
}

impl From<MatterError> for ApiError {
    fn from(e: MatterError) -> ApiError {
        match e {
            MatterError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the Matter bridge has stopped; see the log",
            ),
            e => {
                tracing::error!(error = %e, "dashboard matter request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log")
            }
        }
    }
}

/// The bridge as the page shows it; the codes only while pairing is open.
async fn view(app: &App) -> Result<Value, ApiError> {
    let Some(matter) = app.matter.as_ref() else {
        return Ok(json!({
            "enabled": false,
            "how_to_enable": HOW_TO_ENABLE,
            "pairing": { "open": false },
        }));
    };
    let status = matter.status().await?;
    let pairing = if status.pairing_open {
        let until = matter.pairing_until(&status);
        {
            let codes = matter.codes();
            let now = crate::store::UnixTime::now().0;
            json!({
                "open": true,
                // Seconds left as well as the time: the browser's clock
                // may not agree with the hub's.
                "closes_at": until.map(|t| t.0 / 1000),
                "closes_in_secs": until.map(|t| ((t.0 - now) / 1000).max(0)),
                "manual_code": codes.manual,
                "manual_code_pretty": codes.manual_pretty,
                "qr_svg": "/api/matter/qr.svg",
            })
        }
    } else {
        json!({ "open": false })
    };
    Ok(json!({
        "enabled": true,
        "port": status.port,
        "controllers": status.fabrics,
        "bridged": status.bridged,
        "window_secs": crate::matter::PAIRING_WINDOW_SECS,
        "pairing": pairing,
    }))
}

#[utoipa::path(get, path = "/api/matter", responses((status = 200, description = "Whether the Matter bridge is on (if not, how to turn it on), whether pairing is open and until when, how many controllers and devices; the setup codes only while pairing is open")))]
pub(super) async fn matter_status(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&app).await?))
}

#[utoipa::path(get, path = "/api/matter/qr.svg", responses((status = 200, description = "The setup QR code, as SVG", content_type = "image/svg+xml"), (status = 404, description = "Pairing is not open, or the Matter bridge is off")))]
pub(super) async fn matter_qr(State(app): State<Arc<App>>, _session: Authed) -> Result<Response, ApiError> {
    let matter = matter(&app)?;
    if !matter.status().await?.pairing_open {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "pairing is not open"));
    }
    let svg = matter.codes().qr_svg();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/matter/pairing", responses((status = 200, description = "Pairing is open for 15 minutes, or until a controller joins (audited); the bridge with its setup codes"), (status = 404, description = "The Matter bridge is off")))]
pub(super) async fn matter_pair_open(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    matter(&app)?.open_pairing(actor(&session)).await?;
    Ok(Json(view(&app).await?))
}

#[utoipa::path(delete, path = "/api/matter/pairing", responses((status = 200, description = "Pairing is closed (audited if it was open); the bridge, and whether it was open"), (status = 404, description = "The Matter bridge is off")))]
pub(super) async fn matter_pair_close(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let was_open = matter(&app)?.close_pairing(actor(&session)).await?;
    let mut v = view(&app).await?;
    v["was_open"] = json!(was_open);
    Ok(Json(v))
}

#[utoipa::path(get, path = "/api/matter/fabrics", responses((status = 200, description = "The controllers (Matter fabrics) that joined: index, the label each set, vendor, and when hearth first saw it"), (status = 404, description = "The Matter bridge is off")))]
pub(super) async fn matter_fabrics(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    let list = matter(&app)?.fabrics().await?;
    Ok(Json(crate::matter::fabrics::listing(&list)))
}

#[utoipa::path(delete, path = "/api/matter/fabrics/{index}", params(("index" = u8, Path, description = "The controller's fabric index")), responses((status = 200, description = "Removed (audited): the controller can no longer reach hearth, and its sessions end"), (status = 404, description = "No such controller, or the Matter bridge is off")))]
pub(super) async fn matter_remove(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(index): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let matter = matter(&app)?;
    let no_such = || ApiError::new(StatusCode::NOT_FOUND, "no such controller");
    // Fabric indices run from 1 to 254.
    let index = index
        .parse::<u8>()
        .ok()
        .filter(|i| (1..=254).contains(i))
        .ok_or_else(no_such)?;
    if !matter.remove_fabric(index, actor(&session)).await? {
        return Err(no_such());
    }
    Ok(Json(json!({ "removed": true })))
}
