//! The OpenAPI document of the dashboard's API, at `/api/openapi.json`.

use axum::Json;
use axum::response::{IntoResponse, Response};

// The handlers are named without their module: utoipa would otherwise tag
// each operation with the module's name, which is not part of the API.
use super::account::*;
use super::audit::*;
use super::devices::*;
use super::dns::*;
use super::events::*;
use super::homeassistant::*;
use super::matter::*;
use super::relay::*;
use super::safety::*;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hearth dashboard API",
        description = "The JSON API behind hearth's LAN dashboard. Every state-changing request needs the session cookie and the X-CSRF-Token header."
    ),
    paths(
        state,
        setup,
        login,
        logout,
        session,
        change_password,
        require_password_change,
        enroll,
        reenroll,
        qr,
        confirm,
        sessions,
        revoke,
        audit,
        audit_verify,
        audit_export,
        audit_types,
        lockdown,
        keys_status,
        keys_rotate,
        backup_download,
        erase_everything,
        warnings,
        acknowledge_warning,
        acknowledge_all_warnings,
        privacy,
        devices,
        adopt,
        ignore,
        update,
        command,
        rotate,
        forget,
        events,
        ha_status,
        ha_enable,
        ha_rotate,
        ha_disable,
        ha_settings,
        relay_status,
        relay_enable,
        relay_disable,
        relay_register,
        relay_unregister,
        relay_revoke,
        matter_status,
        matter_qr,
        matter_pair_open,
        matter_pair_close,
        matter_fabrics,
        matter_remove,
        dns_status,
        device_dns,
        device_policy,
        clouds,
        cloud_add,
        cloud_remove
    )
)]
struct ApiDoc;

pub(super) async fn openapi() -> Response {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    // No version banner, here either.
    doc.info.version = "1".into();
    Json(doc).into_response()
}
