//! hearth's handlers on the broker crate's hook chain: authentication, the
//! subscribe and publish ACLs, the hub tap, and counters.
//!
//! The broker crate allows a publish or subscribe when no handler answers, so
//! these handlers always answer, at the highest priority, and a start-up
//! probe proves they are armed before any listener accepts (see `install`).
//! Nothing here logs a topic, client id, username or address.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, Priority, ReturnType, Type};
use rmqtt::types::{AuthResult, PublishAclResult, SubscribeAclResult};
use tokio::sync::broadcast;

use super::acl::{self, Action, Decision};
use super::connect::{Credentials, Owner, Refusal, valid_client_id};

/// The handlers run before anything another plugin registers.
const PRIORITY: Priority = Priority::MAX;

/// A message a device published and the ACL allowed, for hearth's hub.
#[derive(Clone, Debug)]
pub struct HubMessage {
    pub from: Owner,
    pub topic: String,
    pub payload: bytes::Bytes,
    pub retain: bool,
}

/// Counters the hooks keep. Counts only, never what was counted.
#[derive(Debug, Default)]
pub struct HookStats {
    pub connects_allowed: AtomicU64,
    pub refused_credentials: AtomicU64,
    pub refused_client_id: AtomicU64,
    pub refused_will: AtomicU64,
    pub refused_duplicate: AtomicU64,
    pub refused_sessions: AtomicU64,
    /// Reconnects with the same credential that took a live session over.
    pub takeovers: AtomicU64,
    pub denied_publish: AtomicU64,
    pub denied_subscribe: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
}

pub struct Decider {
    scx: ServerContext,
    creds: Arc<Credentials>,
    stats: Arc<HookStats>,
    hub: broadcast::Sender<HubMessage>,
    armed: Arc<AtomicBool>,
}

impl Decider {
    async fn authenticate(&self, ci: &rmqtt::types::ConnectInfo) -> AuthResult {
        let username = ci.username().map(|u| u.as_ref()).unwrap_or("");
        let password = ci.password().map(|p| p.as_ref()).unwrap_or(b"");
        let client_id: &str = ci.client_id().as_ref();
        let will_topic = ci.last_will().map(|w| match w {
            rmqtt::types::LastWill::V3(w) => w.topic.to_string(),
            rmqtt::types::LastWill::V5(w) => w.topic.to_string(),
        });
        let refusal = if !valid_client_id(client_id) {
            Err(Refusal::WrongClientId)
        } else {
            self.creds
                .check_connect(username, password, client_id, will_topic.as_deref())
        };
        // MQTT says a CONNECT with a connected client id takes that session
        // over; devices rely on it after a silent Wi-Fi drop. Only the same
        // credential may do so.
        let refusal = match refusal {
            Ok(identity) => match super::session_owner(&self.scx, client_id).await {
                Some(owner) if owner.as_deref() != Some(username) => Err(Refusal::DuplicateClientId),
                Some(_) => {
                    self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                    Ok(identity)
                }
                None => Ok(identity),
            },
            other => other,
        };
        let conn = ci.id().remote_addr;
        let refusal = refusal.and_then(|identity| {
            self.creds
                .bind_session(client_id, &identity, conn)
                .map(|()| identity)
        });
        let refusal = match refusal {
            Err(Refusal::TooManySessions) => {
                self.forget_ended_sessions().await;
                self.creds
                    .check_connect(username, password, client_id, will_topic.as_deref())
                    .and_then(|identity| {
                        self.creds
                            .bind_session(client_id, &identity, conn)
                            .map(|()| identity)
                    })
            }
            other => other,
        };
        match refusal {
            Ok(_) => {
                self.stats.connects_allowed.fetch_add(1, Ordering::Relaxed);
                // Never a superuser: superusers skip the ACL hooks.
                AuthResult::Allow(false, None)
            }
            Err(Refusal::BadCredentials) => {
                self.stats.refused_credentials.fetch_add(1, Ordering::Relaxed);
                AuthResult::BadUsernameOrPassword
            }
            Err(r) => {
                let counter = match r {
                    Refusal::WrongClientId => &self.stats.refused_client_id,
                    Refusal::WillOutsideTopics => &self.stats.refused_will,
                    Refusal::TooManySessions => &self.stats.refused_sessions,
                    _ => &self.stats.refused_duplicate,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                AuthResult::NotAuthorized
            }
        }
    }

    /// Drops the bindings of client ids the broker holds no session for
    /// (an end the termination hook did not see), when the table is full.
    async fn forget_ended_sessions(&self) {
        for client_id in self.creds.bound_client_ids() {
            if !super::session_exists(&self.scx, &client_id).await {
                self.creds.forget_session(&client_id);
            }
        }
    }

    fn principal_of(&self, session: &rmqtt::session::Session) -> Option<Arc<super::connect::Identity>> {
        let username = session.id.username.as_ref()?;
        let identity = self.creds.get(username.as_ref())?;
        // A session whose credential was replaced or revoked has no rights.
        self.creds
            .session_matches(session.id.client_id.as_ref(), &identity)
            .then_some(identity)
    }
}

#[async_trait]
impl Handler for Decider {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::BeforeStartup => {
                self.armed.store(true, Ordering::SeqCst);
                (true, acc)
            }
            Parameter::ClientAuthenticate(ci) => {
                (false, Some(HookResult::AuthResult(self.authenticate(ci).await)))
            }
            Parameter::ClientSubscribeCheckAcl(session, sub) => {
                let decision = match self.principal_of(session) {
                    Some(id) => acl::decide(&id.principal, Action::Subscribe, sub.topic_filter.as_ref()),
                    None => Decision::Deny,
                };
                let result = match decision {
                    Decision::Allow => SubscribeAclResult::new_success(sub.opts.qos(), None),
                    Decision::Deny => {
                        self.stats.denied_subscribe.fetch_add(1, Ordering::Relaxed);
                        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                    }
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let identity = self.principal_of(session);
                let decision = match &identity {
                    Some(id) => acl::decide(&id.principal, Action::Publish, publish.topic.as_ref()),
                    None => Decision::Deny,
                };
                let result = match (decision, identity) {
                    (Decision::Allow, Some(id)) => {
                        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        if self.hub.receiver_count() > 0 {
                            let _ = self.hub.send(HubMessage {
                                from: id.owner.clone(),
                                topic: publish.topic.to_string(),
                                payload: publish.payload.clone(),
                                retain: publish.retain,
                            });
                        }
                        PublishAclResult::allow()
                    }
                    _ => {
                        self.stats.denied_publish.fetch_add(1, Ordering::Relaxed);
                        PublishAclResult::rejected(false, None)
                    }
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            // Runs before the publish ACL, and the egress bridge forwards on
            // this hook: stop the chain for anything the ACL would deny, so
            // a denied publish never leaves the hub.
            Parameter::MessagePublish(Some(session), _, publish) => {
                let allowed = self.principal_of(session).is_some_and(|id| {
                    acl::decide(&id.principal, Action::Publish, publish.topic.as_ref()) == Decision::Allow
                });
                (allowed, acc)
            }
            Parameter::SessionTerminated(session, _) => {
                self.creds
                    .release_session(session.id.client_id.as_ref(), session.id.remote_addr);
                (true, acc)
            }
            Parameter::MessageDelivered(..) => {
                self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// The hook types whose answer decides access. If any is missing, the
/// broker crate would allow what no one decided.
const DECIDING: [Type; 3] = [
    Type::ClientAuthenticate,
    Type::ClientSubscribeCheckAcl,
    Type::MessagePublishCheckAcl,
];

#[derive(Debug, thiserror::Error)]
#[error(
    "the broker's access checks are not armed ({0}); refusing to start rather than run a broker that allows \
     everything"
)]
pub struct NotArmed(&'static str);

/// Registers the handlers for `types`, starts them, and proves they run: the
/// start-up probe is registered on the same `Register`, so it only fires if
/// that `Register` was started. `types` must hold every deciding hook.
/// `guard_publish` adds the pre-ACL `MessagePublish` guard, which only the
/// egress bridge needs: without it, a publish is decided once, not twice.
pub async fn install(
    scx: &ServerContext,
    creds: Arc<Credentials>,
    stats: Arc<HookStats>,
    hub: broadcast::Sender<HubMessage>,
    types: &[Type],
    guard_publish: bool,
    start: bool,
) -> Result<(), NotArmed> {
    let armed = Arc::new(AtomicBool::new(false));
    let decider = || {
        Box::new(Decider {
            scx: scx.clone(),
            creds: creds.clone(),
            stats: stats.clone(),
            hub: hub.clone(),
            armed: armed.clone(),
        })
    };
    let register = scx.extends.hook_mgr().register();
    for t in types {
        register.add_priority(*t, PRIORITY, decider()).await;
    }
    register
        .add_priority(Type::MessageDelivered, PRIORITY, decider())
        .await;
    register
        .add_priority(Type::SessionTerminated, PRIORITY, decider())
        .await;
    if guard_publish {
        register
            .add_priority(Type::MessagePublish, PRIORITY, decider())
            .await;
    }
    register
        .add_priority(Type::BeforeStartup, PRIORITY, decider())
        .await;
    if start {
        register.start().await;
    }
    if let Some(missing) = DECIDING.iter().find(|t| !types.contains(t)) {
        return Err(NotArmed(match missing {
            Type::ClientAuthenticate => "no authentication handler",
            Type::ClientSubscribeCheckAcl => "no subscribe ACL handler",
            _ => "no publish ACL handler",
        }));
    }
    scx.extends.hook_mgr().before_startup().await;
    if !armed.load(Ordering::SeqCst) {
        return Err(NotArmed("the handlers were registered but never started"));
    }
    Ok(())
}

/// Every deciding hook: what a real broker installs.
pub fn deciding_types() -> &'static [Type] {
    &DECIDING
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn context() -> ServerContext {
        ServerContext::new()
            .node_id(1)
            .busy_check_enable(false)
            .build()
            .await
    }

    async fn try_install(types: &[Type], start: bool) -> Result<(), NotArmed> {
        let scx = context().await;
        let (hub, _) = broadcast::channel(4);
        install(
            &scx,
            Arc::new(Credentials::new()),
            Arc::default(),
            hub,
            types,
            false,
            start,
        )
        .await
    }

    #[tokio::test]
    async fn armed_only_with_every_deciding_hook_started() {
        try_install(deciding_types(), true)
            .await
            .expect("a full install is armed");
        let no_publish_acl = [Type::ClientAuthenticate, Type::ClientSubscribeCheckAcl];
        let err = try_install(&no_publish_acl, true).await.unwrap_err();
        assert!(err.to_string().contains("no publish ACL handler"), "{err}");
        let no_subscribe_acl = [Type::ClientAuthenticate, Type::MessagePublishCheckAcl];
        assert!(try_install(&no_subscribe_acl, true).await.is_err());
        let no_auth = [Type::ClientSubscribeCheckAcl, Type::MessagePublishCheckAcl];
        assert!(try_install(&no_auth, true).await.is_err());
        let err = try_install(deciding_types(), false).await.unwrap_err();
        assert!(err.to_string().contains("never started"), "{err}");
        assert!(err.to_string().contains("refusing to start"), "{err}");
    }
}
