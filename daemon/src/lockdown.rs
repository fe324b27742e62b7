//! Lockdown, "log everyone out": one action that revokes every dashboard
//! session (but the caller's), every voice relay link and its tokens, and
//! Home Assistant's password, and optionally rotates every device's
//! credential. Local control keeps working: devices stay connected (unless
//! rotated) and the canonical topics keep flowing.

use std::sync::Arc;

use serde::Serialize;

use crate::devices::{DeviceError, Devices, Provisioning};
use crate::homeassistant::HomeAssistant;
use crate::store::{Actor, AuditEvent, CredentialId};
use crate::web::auth::Auth;

/// What a lockdown did.
#[derive(Serialize)]
pub struct Report {
    pub sessions_ended: usize,
    pub relay_links_revoked: usize,
    pub homeassistant_password_revoked: bool,
    /// New provisioning for each device, when they were rotated: shown
    /// once, for re-entry into each device.
    pub devices_rotated: Vec<Provisioning>,
}

/// Locks down. `keep` is the caller's dashboard session; `by` says who
/// asked, for the audit log.
pub async fn lockdown(
    auth: Option<&Arc<Auth>>,
    keep: Option<CredentialId>,
    homeassistant: &HomeAssistant,
    devices: &Devices,
    rotate_devices: bool,
    by: Actor,
) -> Result<Report, DeviceError> {
    let sessions_ended = match auth {
        Some(auth) => {
            let auth = auth.clone();
            tokio::task::spawn_blocking(move || auth.revoke_all(keep.as_ref()))
                .await
                .map_err(|e| DeviceError::Internal(e.to_string()))?
                .map_err(|e| DeviceError::Internal(e.to_string()))?
        }
        None => 0,
    };
    let relay_links_revoked = devices.with_store(|s| Ok(s.delete_relay_links()?)).await?;
    let homeassistant_password_revoked = homeassistant.lock(by.clone()).await?;
    let mut devices_rotated = Vec::new();
    if rotate_devices {
        for d in devices.adopted().await? {
            devices_rotated.push(devices.rotate(&d.id, by.clone()).await?);
        }
    }
    let detail = format!(
        "{sessions_ended} session(s) ended, {relay_links_revoked} relay link(s) revoked, Home Assistant password {}, {} device credential(s) rotated",
        if homeassistant_password_revoked {
            "revoked"
        } else {
            "not in use"
        },
        devices_rotated.len()
    );
    devices
        .with_store(move |s| Ok(s.append_audit(&AuditEvent::ok("lockdown", by, detail))?))
        .await?;
    tracing::warn!(
        sessions_ended,
        relay_links_revoked,
        homeassistant_password_revoked,
        devices_rotated = devices_rotated.len(),
        "lockdown"
    );
    Ok(Report {
        sessions_ended,
        relay_links_revoked,
        homeassistant_password_revoked,
        devices_rotated,
    })
}
