//! `/metrics` for Prometheus: who may scrape (`web.metrics`), then the
//! counts that `web::metrics` renders.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{ApiError, App, Client, off_thread};

/// Prometheus metrics: counts only. Loopback clients, or the bearer token
/// from `hearth metrics token`, as `web.metrics` says.
pub(super) async fn metrics(
    State(app): State<Arc<App>>,
    Client(from): Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use crate::web::metrics::MetricsAccess;
    let Some(metrics) = app.metrics.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are off (web.metrics = \"off\")",
        ));
    };
    match metrics.access {
        MetricsAccess::Off => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "metrics are off (web.metrics = \"off\")",
            ));
        }
        MetricsAccess::Loopback => {
            if !from.is_loopback() && !from.to_canonical().is_loopback() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "metrics are served to this hub only; set web.metrics = \"token\" to scrape from elsewhere",
                ));
            }
        }
        MetricsAccess::Token => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 256);
            let auth = app.auth.clone();
            let valid = match given {
                Some(t) => {
                    let t = t.to_owned();
                    off_thread(move || auth.metrics_token_valid(&t)).await??
                }
                None => false,
            };
            if !valid {
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "a valid metrics token is needed (hearth metrics token)",
                )
                .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"hearth metrics\""),
                );
                return Ok(r);
            }
        }
    }
    let body = metrics.render().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
