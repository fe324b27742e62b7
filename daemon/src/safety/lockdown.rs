//! Lockdown, "log everyone out": one action that revokes every dashboard
//! session (but the caller's), every voice relay link and its tokens,
//! Home Assistant's password, the metrics token and every Matter controller
//! (closing Matter pairing too), and optionally rotates every device's
//! credential. Local control keeps working: devices stay connected (unless
//! rotated) and the canonical topics keep flowing.

use std::sync::Arc;

use serde::Serialize;

use super::count;
use crate::accounts::Auth;
use crate::home::devices::{DeviceError, Devices, Provisioning};
use crate::home::homeassistant::HomeAssistant;
use crate::matter::{Matter, MatterError};
use crate::store::AuditKind;
use crate::store::{Actor, AuditEvent, CredentialId};

/// What a lockdown did.
#[derive(Serialize)]
pub struct Report {
    pub sessions_ended: usize,
    pub relay_links_revoked: usize,
    pub homeassistant_password_revoked: bool,
    /// Whether there was a metrics token to revoke.
    pub metrics_token_revoked: bool,
    /// Whether the next login must choose a new password.
    pub new_password_required: bool,
    /// Matter controllers (fabrics) removed: by the running bridge, or
    /// from the store when it is off.
    pub matter_controllers_removed: usize,
    /// New provisioning for each device, when they were rotated: shown
    /// once, for re-entry into each device.
    pub devices_rotated: Vec<Provisioning>,
}

/// What to do beyond revoking sessions, links and Home Assistant's
/// password.
#[derive(Clone, Copy, Default)]
pub struct Options {
    /// Rotate every device's credential.
    pub rotate_devices: bool,
    /// Require a new password at the next login.
    pub require_new_password: bool,
}

/// Locks down. `keep` is the caller's dashboard session; `matter` the
/// Matter bridge when it runs; `by` says who asked, for the audit log.
#[allow(clippy::too_many_arguments)]
pub async fn lockdown(
    auth: Option<&Arc<Auth>>,
    keep: Option<CredentialId>,
    homeassistant: &HomeAssistant,
    devices: &Devices,
    matter: Option<&Matter>,
    options: Options,
    by: Actor,
) -> Result<Report, DeviceError> {
    let (sessions_ended, new_password_required, metrics_token_revoked) = match auth {
        Some(auth) => {
            let auth = auth.clone();
            tokio::task::spawn_blocking(move || {
                // The flag first: a login racing the lockdown either gets a
                // session that is revoked next, or must change the password.
                let required = options.require_new_password
                    && auth.require_password_change_everywhere(keep.as_ref())? > 0;
                Ok::<_, crate::accounts::AuthError>((
                    auth.revoke_all(keep.as_ref())?,
                    required,
                    auth.revoke_metrics_token()?,
                ))
            })
            .await
            .map_err(|e| DeviceError::Internal(e.to_string()))?
            .map_err(|e| DeviceError::Internal(e.to_string()))?
        }
        None => (0, false, false),
    };
    let relay_links_revoked = devices.with_store(|s| Ok(s.delete_relay_links()?)).await?;
    let homeassistant_password_revoked = homeassistant.lock(by.clone()).await?;
    let matter_controllers_removed = remove_matter_controllers(matter, devices).await?;
    let mut devices_rotated = Vec::new();
    if options.rotate_devices {
        for d in devices.adopted().await? {
            devices_rotated.push(devices.rotate(&d.id, by.clone()).await?);
        }
    }
    let detail = format!(
        "{} ended, {} revoked, Home Assistant password {}, metrics token {}, {} rotated, {} removed{}",
        count(sessions_ended, "session"),
        count(relay_links_revoked, "relay link"),
        if homeassistant_password_revoked {
            "revoked"
        } else {
            "not in use"
        },
        if metrics_token_revoked {
            "revoked"
        } else {
            "not in use"
        },
        count(devices_rotated.len(), "device credential"),
        count(matter_controllers_removed, "Matter controller"),
        if new_password_required {
            ", a new password required at the next login"
        } else {
            ""
        }
    );
    devices
        .with_store(move |s| Ok(s.append_audit(&AuditEvent::ok(AuditKind::Lockdown, by, detail))?))
        .await?;
    tracing::warn!(
        sessions_ended,
        relay_links_revoked,
        homeassistant_password_revoked,
        metrics_token_revoked,
        new_password_required,
        devices_rotated = devices_rotated.len(),
        matter_controllers_removed,
        "lockdown"
    );
    Ok(Report {
        sessions_ended,
        relay_links_revoked,
        homeassistant_password_revoked,
        metrics_token_revoked,
        new_password_required,
        matter_controllers_removed,
        devices_rotated,
    })
}

/// Removes every Matter controller, so none can reach hearth again
/// without the owner pairing it anew. A running bridge is asked (it closes
/// pairing, and the removed controllers' sessions end); when it is off, or
/// its thread has stopped, the fabrics go from the store, so turning the
/// bridge on later brings none back.
async fn remove_matter_controllers(matter: Option<&Matter>, devices: &Devices) -> Result<usize, DeviceError> {
    let offline = || devices.with_store(|s| Ok(crate::matter::kv::remove_fabrics_offline(s)?));
    match matter {
        Some(m) => match m.remove_all_fabrics().await {
            Ok(n) => Ok(n),
            Err(MatterError::Stopped) => offline().await,
            Err(MatterError::Store(e)) => Err(DeviceError::Store(e)),
            Err(e) => Err(DeviceError::Internal(e.to_string())),
        },
        None => offline().await,
    }
}
