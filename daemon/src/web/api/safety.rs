//! The Security page: standing warnings, the data key rotation, backup,
//! erase, lockdown and the privacy report.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::homeassistant::homeassistant;
use super::names::Names;
use super::relay::relay_view;
use super::{ApiError, App, Authed, Body, Client, off_thread};
use crate::accounts::{AuthError, actor};
use crate::store::{AuditEvent, AuditKind};

#[utoipa::path(get, path = "/api/warnings", responses((status = 200, description = "Standing warnings: changes that lowered protection, until the owner acknowledges them. Each has its group (exposed_homeassistant, exposed_voice, relay, homeassistant, configuration or other), its words with the device it names put by nickname (text), and that device's id (device_id)")))]
pub(super) async fn warnings(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let (list, names) = app
        .devices_store(|store| {
            Ok((
                crate::store::warnings::standing(store)?,
                Names::load(store, session.id.as_str())?,
            ))
        })
        .map_err(AuthError::from)?;
    Ok(Json(Value::Array(
        list.iter().map(|w| names.warning(w)).collect(),
    )))
}

#[utoipa::path(post, path = "/api/warnings/acknowledge", responses((status = 200, description = "Every standing warning acknowledged at once, each audited; how many (acknowledged)")))]
pub(super) async fn acknowledge_all_warnings(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let n = app
        .devices_store(|store| crate::store::warnings::acknowledge_all(store, actor(&session)))
        .map_err(AuthError::from)?;
    Ok(Json(json!({ "acknowledged": n })))
}

#[utoipa::path(post, path = "/api/warnings/{id}/acknowledge", params(("id" = String, Path, description = "The warning's id")), responses((status = 200, description = "Acknowledged (audited)"), (status = 404, description = "No such standing warning")))]
pub(super) async fn acknowledge_warning(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id.len() > 32 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such warning"));
    }
    let done = app
        .devices_store(|store| crate::store::warnings::acknowledge(store, &id, actor(&session)))
        .map_err(AuthError::from)?;
    if !done {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such warning"));
    }
    Ok(Json(json!({ "acknowledged": true })))
}

#[utoipa::path(get, path = "/api/keys", responses((status = 200, description = "The data key rotation's progress: rows re-sealed, of all, and whether the old key is destroyed")))]
pub(super) async fn keys_status(
    State(app): State<Arc<App>>,
    _session: Authed,
) -> Result<Json<Value>, ApiError> {
    let p = app.keys.progress().await?;
    Ok(Json(
        json!({ "done": p.done, "total": p.total, "finished": p.finished }),
    ))
}

#[utoipa::path(post, path = "/api/keys/rotate", responses((status = 202, description = "Rotation started (or already under way): a new data key seals new values at once; the others are re-sealed in the background, then the old key is destroyed")))]
pub(super) async fn keys_rotate(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = app.keys.rotate(actor(&session)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "done": p.done, "total": p.total, "finished": p.finished })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupBody {
    /// What the backup is sealed under (12 characters or more).
    passphrase: String,
    /// The owner's password, again.
    password: String,
    /// A TOTP or recovery code, when two-factor authentication is on.
    code: Option<String>,
}

#[utoipa::path(post, path = "/api/backup", request_body = BackupBody, responses((status = 200, description = "The backup file: the store and the master key, sealed under the passphrase with argon2id and ChaCha20-Poly1305", content_type = "application/octet-stream"), (status = 400, description = "A passphrase under 12 characters"), (status = 401, description = "Wrong password or code")))]
pub(super) async fn backup_download(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Client(from): Client,
    Body(b): Body<BackupBody>,
) -> Result<Response, ApiError> {
    crate::safety::backup::check_passphrase(&b.passphrase)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let auth = app.auth.clone();
    let s = session.clone();
    let (password, code) = (b.password, b.code);
    off_thread(move || auth.reauthenticate(&s, &password, code.as_deref(), from, AuditKind::BackupRefused))
        .await??;
    let data_dir = crate::store::DataDir::new(app.auth.data_dir());
    let key_path = app.key_path.clone();
    let passphrase = zeroize::Zeroizing::new(b.passphrase);
    let sealed = off_thread(move || -> Result<Vec<u8>, crate::safety::backup::BackupError> {
        let master_key = match key_path {
            Some(p) => Some(zeroize::Zeroizing::new(std::fs::read(&p).map_err(|source| {
                crate::safety::backup::BackupError::Io {
                    path: p.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        let contents = crate::safety::backup::Contents {
            db: crate::safety::backup::snapshot(&data_dir)?,
            config: None,
            master_key,
        };
        crate::safety::backup::seal(&contents, &passphrase)
    })
    .await?
    .map_err(|e| {
        tracing::error!(error = %e, "could not make a backup");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the backup could not be made")
    })?;
    let detail = crate::safety::backup::audit_detail(sealed.len(), "downloaded from the dashboard");
    app.auth
        .audit(AuditEvent::ok(AuditKind::BackupCreated, actor(&session), detail));
    let mut r = sealed.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"hearth.hearthbackup\""),
    );
    Ok(r)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EraseBody {
    /// Must be "erase everything".
    confirm: String,
    /// The owner's password, again.
    password: String,
    /// A TOTP or recovery code, when two-factor authentication is on.
    code: Option<String>,
}

#[utoipa::path(post, path = "/api/erase", request_body = EraseBody, responses((status = 200, description = "The keys are destroyed (nothing on the disk opens any more), the known backups removed; hearth stops and removes its files, and starts fresh next time"), (status = 400, description = "Not confirmed"), (status = 401, description = "Wrong password or code")))]
pub(super) async fn erase_everything(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Client(from): Client,
    Body(b): Body<EraseBody>,
) -> Result<Json<Value>, ApiError> {
    if b.confirm != "erase everything" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "type \"erase everything\" to confirm",
        ));
    }
    let auth = app.auth.clone();
    let s = session.clone();
    let (password, code) = (b.password, b.code);
    off_thread(move || auth.reauthenticate(&s, &password, code.as_deref(), from, AuditKind::EraseRefused))
        .await??;
    tracing::warn!("erase from the dashboard: destroying the keys, then stopping");
    let keys = app.devices_store(|s| s.destroy_keys()).map_err(AuthError::from)?;
    let data_dir = crate::store::DataDir::new(app.auth.data_dir());
    let key_path = app.key_path.clone();
    off_thread(move || crate::safety::erase::shred_keys_and_backups(&data_dir, key_path.as_deref()))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "erase: could not remove the key file or a backup");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the keys are destroyed, but a file could not be removed",
            )
        })?;
    app.erased.store(true, std::sync::atomic::Ordering::SeqCst);
    let stop = app.shutdown.clone();
    tokio::spawn(async move {
        // Long enough for this answer to reach the browser.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    Ok(Json(json!({ "erased": true, "data_keys_destroyed": keys })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LockdownBody {
    #[serde(default)]
    rotate_devices: bool,
    /// Every login after this one must choose a new password first.
    #[serde(default)]
    require_new_password: bool,
}

#[utoipa::path(post, path = "/api/lockdown", request_body = LockdownBody, responses((status = 200, description = "Every other dashboard session ended, every relay link, Home Assistant's password and every Matter controller revoked (Matter pairing closed), and with rotate_devices every device credential rotated (the new provisioning shown once)")))]
pub(super) async fn lockdown(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<LockdownBody>,
) -> Result<Json<Value>, ApiError> {
    let ha = homeassistant(&app)?.clone();
    let report = crate::safety::lockdown::lockdown(
        Some(&app.auth),
        Some(session.id.clone()),
        &ha,
        &app.devices,
        app.matter.as_deref(),
        crate::safety::lockdown::Options {
            rotate_devices: b.rotate_devices,
            require_new_password: b.require_new_password,
        },
        actor(&session),
    )
    .await?;
    Ok(Json(serde_json::to_value(report).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?))
}
#[utoipa::path(get, path = "/api/privacy", responses((status = 200, description = "What hearth stores, in what form, and what leaves the house")))]
pub(super) async fn privacy(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    let shared = match &app.homeassistant {
        Some(ha) => {
            let st = ha.status().await?;
            let details = if st.settings.share_device_details {
                "model, vendor and firmware too (\"share device details\" is on)"
            } else {
                "not model, vendor or firmware (\"share device details\" is off)"
            };
            json!([{
                "with": "Home Assistant",
                "enabled": st.enabled,
                "share_device_details": st.settings.share_device_details,
                "devices": st.exposed,
                "what": if st.enabled {
                    match st.exposed {
                        0 => format!(
                            "On, over hearth's own broker on your LAN, with no device exposed to it yet: it is told nothing. Once you expose one, its nickname, room, kind and live state; {details}."
                        ),
                        n => format!(
                            "On, over hearth's own broker on your LAN: for the {n} {} you exposed, their nickname, room, kind and live state; {details}.",
                            if n == 1 { "device" } else { "devices" }
                        ),
                    }
                } else {
                    "Off: Home Assistant is told nothing.".to_owned()
                },
            }])
        }
        None => json!([]),
    };
    let mut shared = shared;
    if app.relay.is_some() {
        let v = relay_view(&app).await?;
        let links: Vec<Value> = v["links"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|l| {
                json!({
                    "id": l["id"],
                    "client_name": l["client_name"],
                    "devices": l["devices"].as_array().map(Vec::len).unwrap_or(0),
                    "calls": l["calls"],
                })
            })
            .collect();
        let enabled = v["enabled"].as_bool().unwrap_or(false);
        let what = if links.is_empty() {
            "No assistant is linked: voice assistants are told nothing.".to_owned()
        } else {
            format!(
                "{} link(s), through the relay{}: each sees only the devices you chose, by their voice names, with on/off, brightness and colour temperature. Never a nickname, room, model, firmware, address or camera.",
                links.len(),
                if enabled {
                    ""
                } else {
                    " (off now: nothing listens)"
                }
            )
        };
        if let Some(a) = shared.as_array_mut() {
            a.push(json!({
                "with": "Voice assistants",
                "enabled": enabled,
                "links": links,
                "what": what,
            }));
        }
    }
    let matter = crate::safety::privacy::matter(app.matter.as_deref(), &app.devices).await?;
    if let Some(a) = shared.as_array_mut() {
        a.push(json!({
            "with": "Matter controllers",
            "enabled": matter.enabled,
            "what": matter.what,
            "controllers": matter.controllers,
            "devices": matter.devices,
        }));
    }
    let dns = crate::safety::privacy::dns(app.dns.as_deref());
    if let Some(a) = shared.as_array_mut() {
        a.push(json!({
            "with": "Your upstream DNS resolvers",
            "enabled": dns["enabled"],
            "what": if dns["enabled"] == true { crate::safety::privacy::DNS_FORWARDS } else { "The DNS resolver is off." },
        }));
    }
    let (idle, max) = (app.session_idle_mins(), app.session_max.as_secs() / 3600);
    let report = app
        .devices_store(|store| crate::safety::privacy::report(store, idle, max, None))
        .map_err(AuthError::from)?;
    Ok(Json(json!({
        "held": report["held"],
        "retention": report["retention"],
        "shared": shared,
        "dns": dns,
        "stored": [
            { "what": "Device names, rooms, voice names, kinds, models, firmware, MAC and IP addresses, advertised TXT records", "form": "sealed with ChaCha20-Poly1305 under a key kept outside the database" },
            { "what": "Device MQTT passwords", "form": "only a SHA-256 hash of a 128-bit random secret; the password is shown once" },
            { "what": "Your password", "form": "argon2id hash, then sealed" },
            { "what": "Your two-factor secret", "form": "sealed; recovery codes only as hashes" },
            { "what": "Dashboard sessions", "form": "only a SHA-256 hash of each 128-bit session token" },
            { "what": "Voice relay clients and links (labels, redirect URIs, granted devices and actions)", "form": "sealed; client secrets and every access and refresh token only as SHA-256 hashes" },
            { "what": "The names your adopted devices looked up through hearth's DNS resolver, and each one's DNS policy", "form": "sealed, one record per device; other clients' look-ups are only counted, in memory" },
            { "what": "Audit events (logins, failures, enrolments, revocations)", "form": "sealed; the newest 10,000 are kept" },
            { "what": "Logs", "form": "counts and opaque ids only: never names, addresses or tokens" }
        ],
        "leaves_home": [
            "Nothing by default: hearth needs no cloud account and makes no outbound connection.",
            "hearth answers mDNS on the LAN with its service types and port only: no version, name or model.",
            "An MQTT bridge, if you configure one, sends only the topics you list, over TLS.",
            "Home Assistant runs in your home: what it is told stays on your LAN unless Home Assistant itself sends it on.",
            "Voice assistants you link get only what their requests ask of the relay: voice names and on/off, brightness and colour temperature, for the devices you chose. hearth never calls them.",
            crate::safety::privacy::MATTER_STAYS_ON_THE_LAN
        ]
    })))
}
