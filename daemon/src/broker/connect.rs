//! Who may connect: the in-memory table of MQTT principals and their
//! credential hashes, and the per-address connect rate limit.
//!
//! Checking a CONNECT costs one SHA-256 and a map look-up, never a slow hash,
//! so reconnect storms stay cheap. Nothing here logs a username, client id or
//! address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::acl::{self, Action, Decision, Principal};
use crate::net::rate::Keyed;
use crate::store::DeviceId;
use crate::store::secret::TokenHash;

/// Which of hearth's principals an MQTT identity belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Device(DeviceId),
    /// Home Assistant's MQTT integration.
    HomeAssistant,
    /// hearth's own client; never connects over the network today, kept so
    /// revocation and ACLs treat it like any other principal.
    Hub,
}

/// One MQTT identity.
#[derive(Clone, Debug)]
pub struct Identity {
    pub owner: Owner,
    pub principal: Principal,
    /// The one client id it may connect with, or `None` for any: Home
    /// Assistant picks a random one. A session under any client id stays
    /// bound to the credential it connected with (see
    /// [`Credentials::session_matches`]).
    pub client_id: Option<String>,
    pub secret: TokenHash,
}

/// Why a CONNECT was refused. Counted, never logged with its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such username, or a wrong password: the two are not told apart.
    BadCredentials,
    /// The client id is not the one issued to this username.
    WrongClientId,
    /// The Last Will's topic is outside the principal's own topics.
    WillOutsideTopics,
    /// A session with this client id is connected under another
    /// credential.
    DuplicateClientId,
    /// The table of tracked sessions is full.
    TooManySessions,
}

/// How many live sessions of identities without a fixed client id are
/// tracked at most. Past it a new session is refused (never an old one
/// forgotten: a forgotten session would escape rotation, lockdown and
/// narrowing). The broker's own connection cap is lower by default.
const MAX_FREE_SESSIONS: usize = 8192;

/// Which credential a session under a free client id proved, and on which
/// connection (the front's loopback address towards the broker), so that the
/// end of a session taken over by a newer connection with the same client id
/// does not drop the newer one's binding.
#[derive(Clone, Copy)]
struct Binding {
    secret: TokenHash,
    conn: Option<SocketAddr>,
}

/// The table of identities, by username.
#[derive(Default)]
pub struct Credentials {
    by_username: RwLock<HashMap<String, Arc<Identity>>>,
    /// For identities without a fixed client id: every live session, by
    /// client id.
    free_sessions: Mutex<HashMap<String, Binding>>,
}

impl Credentials {
    pub fn new() -> Credentials {
        Credentials::default()
    }

    pub fn insert(&self, username: String, identity: Identity) {
        self.by_username
            .write()
            .expect("credentials lock")
            .insert(username, Arc::new(identity));
    }

    /// Removes an identity; the caller then cuts its live session.
    pub fn remove(&self, username: &str) -> Option<Arc<Identity>> {
        self.by_username
            .write()
            .expect("credentials lock")
            .remove(username)
    }

    pub fn get(&self, username: &str) -> Option<Arc<Identity>> {
        self.by_username
            .read()
            .expect("credentials lock")
            .get(username)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.by_username.read().expect("credentials lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a CONNECT. Every failure takes the same path up to the hash
    /// comparison, so timing does not tell which usernames exist.
    pub fn check_connect(
        &self,
        username: &str,
        password: &[u8],
        client_id: &str,
        will_topic: Option<&str>,
    ) -> Result<Arc<Identity>, Refusal> {
        let password = std::str::from_utf8(password).unwrap_or("");
        let identity = self.get(username);
        let matches = match &identity {
            Some(id) => id.secret.matches(password),
            None => {
                // Spend the same hash on unknown usernames.
                let _ = TokenHash::of(password);
                false
            }
        };
        let identity = match (identity, matches) {
            (Some(id), true) => id,
            _ => return Err(Refusal::BadCredentials),
        };
        if identity.client_id.as_deref().is_some_and(|c| c != client_id) {
            return Err(Refusal::WrongClientId);
        }
        if let Some(topic) = will_topic
            && acl::decide(&identity.principal, Action::Publish, topic) == Decision::Deny
        {
            return Err(Refusal::WillOutsideTopics);
        }
        Ok(identity)
    }

    /// Records that `client_id` connected with `identity` on `conn`, when
    /// the identity takes any client id. A client id already bound (a
    /// reconnect taking its session over) is rebound to the new connection.
    pub fn bind_session(
        &self,
        client_id: &str,
        identity: &Identity,
        conn: Option<SocketAddr>,
    ) -> Result<(), Refusal> {
        if identity.client_id.is_some() {
            return Ok(());
        }
        let mut free = self.free_sessions.lock().expect("sessions lock");
        if !free.contains_key(client_id) && free.len() >= MAX_FREE_SESSIONS {
            return Err(Refusal::TooManySessions);
        }
        let binding = Binding {
            secret: identity.secret,
            conn,
        };
        free.insert(client_id.to_owned(), binding);
        Ok(())
    }

    /// Forgets the binding of the session that ended on `conn`, unless a
    /// newer connection has taken the client id over since.
    pub fn release_session(&self, client_id: &str, conn: Option<SocketAddr>) {
        let mut free = self.free_sessions.lock().expect("sessions lock");
        if free.get(client_id).is_some_and(|b| b.conn == conn) {
            free.remove(client_id);
        }
    }

    /// Forgets a binding outright: its session no longer exists.
    pub fn forget_session(&self, client_id: &str) {
        self.free_sessions
            .lock()
            .expect("sessions lock")
            .remove(client_id);
    }

    /// Every client id bound now, to check against the broker's sessions.
    pub fn bound_client_ids(&self) -> Vec<String> {
        self.free_sessions
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Whether a session with `client_id` still holds `identity`'s rights:
    /// its fixed client id, or, for any client id, the same credential it
    /// connected with (a rotated credential's old sessions have none).
    pub fn session_matches(&self, client_id: &str, identity: &Identity) -> bool {
        match &identity.client_id {
            Some(c) => c == client_id,
            None => self
                .free_sessions
                .lock()
                .expect("sessions lock")
                .get(client_id)
                .is_some_and(|b| b.secret == identity.secret),
        }
    }

    /// The client ids connected under identities without a fixed one whose
    /// credential is `secret`, to cut when it is revoked.
    pub fn sessions_of(&self, secret: &TokenHash) -> Vec<String> {
        self.free_sessions
            .lock()
            .expect("sessions lock")
            .iter()
            .filter(|(_, b)| b.secret == *secret)
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// Client ids hearth issues: 1 to 64 bytes of `[A-Za-z0-9_-]`. Anything else
/// (`/ + # $`, spaces, control bytes) is refused before any look-up.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A token bucket per client address (`net::rate::Keyed`). Loopback is
/// exempt (local tools, and Home Assistant on the same hub). The table is
/// bounded: when it is full of recently seen addresses, new addresses are
/// refused rather than letting memory grow.
pub struct ConnectRate {
    buckets: Mutex<Keyed<IpAddr>>,
}

impl ConnectRate {
    pub fn new(per_second: u32, burst: u32, max_addresses: usize) -> ConnectRate {
        ConnectRate {
            buckets: Mutex::new(Keyed::new(per_second, burst, max_addresses)),
        }
    }

    /// Whether a new connection from `ip` may proceed now.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if ip.is_loopback() || ip.to_canonical().is_loopback() {
            return true;
        }
        self.buckets.lock().expect("rate lock").take(ip, now)
    }

    pub fn tracked(&self) -> usize {
        self.buckets.lock().expect("rate lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::broker::acl::Rule;

    fn table() -> (Credentials, String) {
        let creds = Credentials::new();
        let id = DeviceId::generate().unwrap();
        let password = "0123456789abcdef0123456789abcdef".to_owned();
        creds.insert(
            id.to_string(),
            Identity {
                owner: Owner::Device(id.clone()),
                principal: Principal::Confined {
                    rules: vec![Rule::subtree(&format!("hearth/{id}"), true, true)],
                },
                client_id: Some(id.to_string()),
                secret: TokenHash::of(&password),
            },
        );
        (creds, password)
    }

    #[test]
    fn connect_checks() {
        let (creds, pw) = table();
        let user = creds.by_username.read().unwrap().keys().next().unwrap().clone();
        let own = format!("hearth/{user}/status");
        assert!(creds.check_connect(&user, pw.as_bytes(), &user, None).is_ok());
        assert!(
            creds
                .check_connect(&user, pw.as_bytes(), &user, Some(&own))
                .is_ok()
        );
        type Case<'a> = (&'a str, &'a [u8], &'a str, Option<&'a str>, Refusal);
        let cases: &[Case] = &[
            (&user, b"wrong", &user, None, Refusal::BadCredentials),
            ("nobody", pw.as_bytes(), &user, None, Refusal::BadCredentials),
            (&user, b"", &user, None, Refusal::BadCredentials),
            (&user, &[0xff, 0xfe], &user, None, Refusal::BadCredentials),
            (&user, pw.as_bytes(), "other", None, Refusal::WrongClientId),
            (
                &user,
                pw.as_bytes(),
                &user,
                Some("hearth/other/lwt"),
                Refusal::WillOutsideTopics,
            ),
            (
                &user,
                pw.as_bytes(),
                &user,
                Some("$SYS/x"),
                Refusal::WillOutsideTopics,
            ),
            (&user, pw.as_bytes(), &user, Some("#"), Refusal::WillOutsideTopics),
        ];
        for (u, p, c, w, want) in cases {
            assert_eq!(
                creds.check_connect(u, p, c, *w).unwrap_err(),
                *want,
                "{u} {c} {w:?}"
            );
        }
        assert!(creds.remove(&user).is_some());
        assert_eq!(
            creds
                .check_connect(&user, pw.as_bytes(), &user, None)
                .unwrap_err(),
            Refusal::BadCredentials
        );
    }

    #[test]
    fn free_sessions_are_all_tracked_and_survive_takeover() {
        let creds = Credentials::new();
        let ha = Identity {
            owner: Owner::HomeAssistant,
            principal: Principal::Confined { rules: Vec::new() },
            client_id: None,
            secret: TokenHash::of("ha-password"),
        };
        let conn = |port: u16| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        // Far more than the sixteen the table once kept: none is forgotten.
        for i in 0..100u16 {
            creds
                .bind_session(&format!("ha-{i}"), &ha, conn(1000 + i))
                .unwrap();
        }
        assert_eq!(creds.sessions_of(&ha.secret).len(), 100);
        assert!(creds.session_matches("ha-0", &ha));
        // A takeover rebinds; the old connection's end then changes nothing.
        creds.bind_session("ha-0", &ha, conn(5000)).unwrap();
        creds.release_session("ha-0", conn(1000));
        assert!(creds.session_matches("ha-0", &ha));
        creds.release_session("ha-0", conn(5000));
        assert!(!creds.session_matches("ha-0", &ha));
        assert_eq!(creds.sessions_of(&ha.secret).len(), 99);
        // A rotated credential's sessions hold no rights.
        let rotated = Identity {
            secret: TokenHash::of("new"),
            ..ha.clone()
        };
        assert!(!creds.session_matches("ha-1", &rotated));
        // Full: a new client id is refused, a known one may still rebind.
        for i in 0..MAX_FREE_SESSIONS {
            let _ = creds.bind_session(&format!("x-{i}"), &ha, None);
        }
        assert_eq!(
            creds.bind_session("one-more", &ha, None),
            Err(Refusal::TooManySessions)
        );
        assert!(creds.bind_session("ha-1", &ha, conn(6000)).is_ok());
        assert!(creds.session_matches("ha-1", &ha));
    }

    #[test]
    fn client_ids() {
        for ok in ["a", "0123456789abcdef0123456789abcdef", "x_y-z"] {
            assert!(valid_client_id(ok), "{ok}");
        }
        for bad in ["", "a/b", "a+b", "a#", "$SYS", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn rate_limit_per_address_with_loopback_exempt() {
        let rate = ConnectRate::new(2, 3, 2);
        let t0 = Instant::now();
        let a: IpAddr = "192.168.1.10".parse().unwrap();
        assert!((0..3).all(|_| rate.allow(a, t0)), "burst");
        assert!(!rate.allow(a, t0), "over the burst");
        assert!(rate.allow(a, t0 + Duration::from_millis(600)), "refilled one");
        for _ in 0..100 {
            assert!(rate.allow("127.0.0.1".parse().unwrap(), t0));
            assert!(rate.allow("::ffff:127.0.0.1".parse().unwrap(), t0));
        }
        // Bounded: a third address while two are fresh is refused...
        assert!(rate.allow("192.168.1.11".parse().unwrap(), t0));
        assert!(!rate.allow("192.168.1.12".parse().unwrap(), t0));
        assert_eq!(rate.tracked(), 2);
        // ...and admitted once the others have gone idle.
        assert!(rate.allow("192.168.1.12".parse().unwrap(), t0 + Duration::from_secs(5)));
    }
}
