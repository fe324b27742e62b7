//! Server-Sent Events: live device state and device list changes, for as
//! long as the session lives.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde_json::{Value, json};

use super::{App, Authed};

#[utoipa::path(get, path = "/api/events", responses((status = 200, description = "Server-Sent Events: `device` (live state) and `devices` (the list changed)", content_type = "text/event-stream")))]
pub(super) async fn events(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = app.devices.subscribe_changes();
    let mut live = app.live.as_ref().map(|l| l.subscribe());
    let mut revoked = app.auth.revocations();
    let app2 = app.clone();
    let stream = async_stream(move |tx| async move {
        loop {
            // The stream ends when its session does.
            if app2.auth.session_alive(&s.id).is_err() {
                return;
            }
            let event = tokio::select! {
                r = revoked.changed() => match r {
                    // Sessions were revoked: check this one again.
                    Ok(()) => continue,
                    Err(_) => return,
                },
                changed = changes.changed() => match changed {
                    Ok(()) => Event::default().event("devices").data("{}"),
                    Err(_) => return,
                },
                update = async {
                    match live.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match update {
                    Ok((id, state)) => {
                        let mut v = serde_json::to_value(&state).unwrap_or(Value::Null);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("id".into(), json!(id.as_str()));
                        }
                        Event::default().event("device").data(v.to_string())
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        Event::default().event("devices").data("{}")
                    }
                    Err(_) => return,
                },
                _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream fed by a task, ended when the task returns or the client goes.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}
