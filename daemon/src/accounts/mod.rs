//! Owner accounts and dashboard sessions: first-run setup with a one-time
//! code, argon2id passwords, TOTP with single-use recovery codes, hashed
//! session tokens with idle and absolute timeouts, and login throttling.
//!
//! Nothing here logs a name, an address or a token. Events go to the sealed
//! audit table instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::secret::{self, Secret, TokenHash, random_token};
use crate::store::{Actor, AuditEvent, CredentialId, Owner, OwnerId, Store, StoreError, UnixTime};

mod browser;
pub mod password;
pub mod throttle;
pub mod totp;

use self::throttle::Throttle;
use self::totp::TotpSecret;
use crate::store::AuditKind;

/// The session credential's kind in the store.
pub const SESSION: &str = "web_session";
/// A recovery code's kind in the store.
pub const RECOVERY: &str = "totp_recovery";
/// The session cookie. `__Host-` binds it to this origin, over HTTPS, path /.
pub const COOKIE: &str = "__Host-hearth";
/// The credential kind of the metrics token.
pub const TOKEN_KIND: &str = "metrics_token";
/// Its principal: the token reads metrics and nothing else.
pub const TOKEN_PRINCIPAL: &str = "metrics";

/// Counters of the doors the owner and the voice assistants knock on,
/// bumped where things happen and read at each `/metrics` scrape.
#[derive(Default)]
pub struct Counters {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub relay_calls: AtomicU64,
    /// Login attempts (dashboard, relay consent, password re-entry) refused
    /// by the throttle before any password was checked.
    pub login_throttled: AtomicU64,
    /// Relay connections refused at once: their address's cap was reached.
    pub relay_refused_address: AtomicU64,
    /// Relay connections refused at once: the relay was full of requests.
    pub relay_refused_full: AtomicU64,
    /// Relay connections closed to make room while they had not sent a
    /// request.
    pub relay_evicted: AtomicU64,
    /// Relay connections that ended before a whole request head: the
    /// header or first-request deadline passed, the TLS handshake failed,
    /// or the client left.
    pub relay_no_request: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The file holding the one-time setup code until it is used.
pub const SETUP_CODE_FILE: &str = "setup-code";
/// Keys (addresses and names) the login throttle keeps at most: far more
/// than a LAN has, in well under a megabyte, so a flood from many addresses
/// only pushes out keys that are not being throttled.
const THROTTLE_KEYS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not logged in")]
    Unauthenticated,
    #[error("invalid username or password")]
    BadCredentials,
    #[error("a two-factor code is needed, or the one given is wrong")]
    TotpRequired,
    #[error("too many attempts; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error("the setup code is wrong")]
    BadSetupCode,
    #[error("hearth is already set up")]
    AlreadySetUp,
    #[error("{0}")]
    Policy(String),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the code is wrong")]
    BadCode,
    #[error("a two-factor code is needed, or the one given is wrong")]
    CodeNeeded,
    #[error("start enrolment first")]
    NoEnrolment,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The audit log's actor for a dashboard session.
pub fn actor(session: &Session) -> Actor {
    Actor::Session(session.id.as_str().to_owned())
}

/// A logged-in request's session.
#[derive(Clone)]
pub struct Session {
    pub id: CredentialId,
    pub owner: OwnerId,
    pub username: String,
    /// Sent with every state-changing request; derived from the token.
    pub csrf: String,
    pub totp_enabled: bool,
    /// The owner must change the password before anything else.
    pub must_change_password: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A new session: its token goes into the cookie, once.
pub struct NewSession {
    pub token: Secret,
    pub session: Session,
}

pub struct Auth {
    store: Arc<Mutex<Store>>,
    data_dir: PathBuf,
    idle: Duration,
    max: Duration,
    /// Last use of each session since start; a session unseen since start
    /// counts from start.
    last_seen: Mutex<HashMap<CredentialId, Instant>>,
    /// Where each session since start was opened, and with what browser:
    /// in memory only, for the owner's list of sessions.
    opened: Mutex<HashMap<CredentialId, Opened>>,
    started: Instant,
    throttle: Mutex<Throttle>,
    setup_code: Mutex<Option<TokenHash>>,
    /// TOTP secrets offered for enrolment, by session, until confirmed.
    enrolling: Mutex<HashMap<CredentialId, TotpSecret>>,
    /// A hash to verify against when the account does not exist, so both
    /// paths cost the same.
    decoy: String,
    /// Bumped whenever sessions are revoked, so open event streams re-check
    /// theirs at once.
    revocations: tokio::sync::watch::Sender<u64>,
    /// The sessions that asked for a password change at the next login,
    /// which may go on until then (in memory: after a restart they must
    /// change it too).
    exempt: Mutex<std::collections::HashSet<CredentialId>>,
    /// Logins, failures and relay calls, for `/metrics`.
    pub counters: Arc<crate::accounts::Counters>,
}

impl Auth {
    pub fn new(
        store: Arc<Mutex<Store>>,
        data_dir: PathBuf,
        idle: Duration,
        max: Duration,
    ) -> Result<Auth, AuthError> {
        let decoy = secret::hash_password(random_token(128).map_err(internal)?.expose()).map_err(internal)?;
        Ok(Auth {
            store,
            data_dir,
            idle,
            max,
            last_seen: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
            revocations: tokio::sync::watch::Sender::new(0),
            exempt: Mutex::new(std::collections::HashSet::new()),
            started: Instant::now(),
            throttle: Mutex::new(Throttle::new(THROTTLE_KEYS)),
            setup_code: Mutex::new(None),
            enrolling: Mutex::new(HashMap::new()),
            decoy,
            counters: Arc::default(),
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store lock")
    }

    pub fn setup_needed(&self) -> Result<bool, AuthError> {
        Ok(self.store().owner_count()? == 0)
    }

    /// With no owner yet: makes the one-time setup code, writes it to a
    /// 0600 file in the data directory, and returns it for the log.
    pub fn prepare_setup(&self) -> Result<Option<Secret>, AuthError> {
        if !self.setup_needed()? {
            let _ = std::fs::remove_file(self.data_dir.join(SETUP_CODE_FILE));
            return Ok(None);
        }
        let code = setup_code()?;
        let path = self.data_dir.join(SETUP_CODE_FILE);
        write_private(&path, format!("{}\n", code.expose()).as_bytes())
            .map_err(|e| AuthError::Internal(format!("cannot write {}: {e}", path.display())))?;
        *self.setup_code.lock().expect("setup lock") = Some(TokenHash::of(&normalize_code(code.expose())));
        Ok(Some(code))
    }

    /// First-run setup: the code, then the owner account, then a session.
    pub fn setup(
        &self,
        code: &str,
        username: &str,
        new_password: &str,
        from: IpAddr,
    ) -> Result<NewSession, AuthError> {
        let key = format!("addr:{from}");
        self.reserve(&[&key])?;
        // Held to the end, so two visitors with the right code cannot both
        // pass the owner check before either has created the account.
        let mut setup_code = self.setup_code.lock().expect("setup lock");
        if !self.setup_needed()? {
            self.refund(&key);
            return Err(AuthError::AlreadySetUp);
        }
        let good = setup_code
            .as_ref()
            .is_some_and(|h| h.matches(&normalize_code(code)));
        if good {
            self.refund(&key);
        } else {
            self.audit(AuditEvent::refused(
                AuditKind::SetupRefused,
                Actor::Visitor,
                format!("wrong setup code from {from}"),
            ));
            return Err(AuthError::BadSetupCode);
        }
        let username = username.trim();
        if username.is_empty() || username.len() > 64 || username.chars().any(char::is_control) {
            return Err(AuthError::Policy("a username is 1 to 64 characters".into()));
        }
        password::check(new_password, username).map_err(|e| AuthError::Policy(e.to_string()))?;
        let hash = Secret::new(secret::hash_password(new_password).map_err(internal)?);
        let owner = self.store().create_owner(&username.to_lowercase(), &hash)?;
        *setup_code = None;
        drop(setup_code);
        let _ = std::fs::remove_file(self.data_dir.join(SETUP_CODE_FILE));
        let new = self.open_session(&owner.id, username, false, from)?;
        self.audit(AuditEvent::ok(
            AuditKind::OwnerCreated,
            Actor::Session(new.session.id.as_str().to_owned()),
            format!("account {username} from {from}"),
        ));
        Ok(new)
    }

    /// Password, then (when enrolled) a TOTP or recovery code.
    pub fn login(
        &self,
        username: &str,
        given_password: &str,
        code: Option<&str>,
        from: IpAddr,
    ) -> Result<NewSession, AuthError> {
        let (owner, two_factor) = self.check_owner(username, given_password, code, from)?;
        self.store().record_login(&owner.id, UnixTime::now())?;
        let new = self.open_session(&owner.id, &owner.email, two_factor, from)?;
        crate::accounts::Counters::bump(&self.counters.logins);
        self.audit(AuditEvent::ok(
            AuditKind::Login,
            Actor::Session(new.session.id.as_str().to_owned()),
            format!("session created, from {from}"),
        ));
        Ok(new)
    }

    /// The owner's password and a TOTP code, for the voice relay's consent
    /// page: under the same throttle as a login, and only for an owner who
    /// turned on two-factor authentication. Opens no session.
    pub fn verify_with_totp(
        &self,
        username: &str,
        given_password: &str,
        code: &str,
        from: IpAddr,
    ) -> Result<OwnerId, AuthError> {
        let (owner, two_factor) = self.check_owner(username, given_password, Some(code), from)?;
        if !two_factor {
            return Err(AuthError::Policy(
                "turn on two-factor authentication in the dashboard first".into(),
            ));
        }
        self.audit(AuditEvent::ok(
            AuditKind::RelayLogin,
            Actor::Visitor,
            format!("consent page, from {from}"),
        ));
        Ok(owner.id)
    }

    /// The owner these credentials prove, and whether they include a second
    /// factor; throttled per address and per account.
    fn check_owner(
        &self,
        username: &str,
        given_password: &str,
        code: Option<&str>,
        from: IpAddr,
    ) -> Result<(Owner, bool), AuthError> {
        let username = username.trim().to_lowercase();
        let keys = [
            format!("addr:{from}"),
            format!("user:{}", hex::encode(&TokenHash::of(&username).as_bytes()[..8])),
        ];
        let key_refs = [keys[0].as_str(), keys[1].as_str()];
        self.reserve(&key_refs)?;
        let owner = self.store().owner_by_email(&username)?;
        let phc = owner
            .as_ref()
            .map(|o| o.password_hash.expose().to_owned())
            .unwrap_or_else(|| self.decoy.clone());
        let password_ok = secret::verify_password(given_password, &phc).unwrap_or(false);
        let Some(owner) = owner.filter(|_| password_ok) else {
            crate::accounts::Counters::bump(&self.counters.login_failures);
            self.audit(AuditEvent::refused(
                AuditKind::LoginFailed,
                Actor::Visitor,
                format!("wrong username or password, from {from}"),
            ));
            return Err(AuthError::BadCredentials);
        };
        let totp = self.totp_of(&owner.id)?;
        let two_factor = totp.is_some();
        if let Some((secret, last)) = totp {
            let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
                // The right password and no code yet is the first step of
                // a login, not a guess.
                keys.iter().for_each(|k| self.refund(k));
                return Err(AuthError::TotpRequired);
            };
            let now = unix_now();
            if let Some(step) = totp::verify(&secret, code, now, last) {
                self.store_totp(&owner.id, &secret, Some(step))?;
            } else if self.use_recovery(&owner.id, code)? {
                self.audit(AuditEvent::ok(
                    AuditKind::RecoveryCodeUsed,
                    Actor::Visitor,
                    format!("from {from}"),
                ));
            } else {
                crate::accounts::Counters::bump(&self.counters.login_failures);
                self.audit(AuditEvent::refused(
                    AuditKind::LoginFailed,
                    Actor::Visitor,
                    format!("wrong two-factor code, from {from}"),
                ));
                return Err(AuthError::TotpRequired);
            }
        }
        keys.iter().for_each(|k| self.succeed(k));
        Ok((owner, two_factor))
    }

    fn open_session(
        &self,
        owner: &OwnerId,
        username: &str,
        totp_enabled: bool,
        from: IpAddr,
    ) -> Result<NewSession, AuthError> {
        let token = random_token(128).map_err(internal)?;
        let expires = UnixTime(UnixTime::now().0 + self.max.as_millis() as i64);
        let cred = self.store().put_credential(
            &principal(owner),
            SESSION,
            &TokenHash::of(token.expose()),
            Some(expires),
        )?;
        let live = {
            let mut seen = self.last_seen.lock().expect("sessions lock");
            seen.insert(cred.id.clone(), Instant::now());
            seen.keys().cloned().collect::<std::collections::HashSet<_>>()
        };
        {
            let mut opened = self.opened.lock().expect("sessions lock");
            opened.retain(|id, _| live.contains(id));
            opened.insert(
                cred.id.clone(),
                Opened {
                    from,
                    browser: None,
                    system: None,
                },
            );
        }
        Ok(NewSession {
            session: Session {
                csrf: csrf_of(token.expose()),
                id: cred.id,
                owner: owner.clone(),
                username: username.to_owned(),
                totp_enabled,
                must_change_password: self.must_change(owner)?,
            },
            token,
        })
    }

    /// The session a cookie's token names, if it is live; refreshes its
    /// idle clock.
    pub fn session(&self, token: &str) -> Result<Session, AuthError> {
        if token.len() > 128 {
            return Err(AuthError::Unauthenticated);
        }
        let cred = self
            .store()
            .find_credential(SESSION, &TokenHash::of(token))?
            .ok_or(AuthError::Unauthenticated)?;
        let now = Instant::now();
        {
            let mut seen = self.last_seen.lock().expect("sessions lock");
            let last = seen.get(&cred.id).copied().unwrap_or(self.started);
            if now.duration_since(last) > self.idle {
                seen.remove(&cred.id);
                drop(seen);
                self.store().delete_credential(&cred.id)?;
                return Err(AuthError::Unauthenticated);
            }
            seen.insert(cred.id.clone(), now);
        }
        let owner_id = cred
            .principal
            .strip_prefix("owner:")
            .and_then(OwnerId::parse)
            .ok_or(AuthError::Unauthenticated)?;
        let owner = self.store().owner(&owner_id)?.ok_or(AuthError::Unauthenticated)?;
        let must_change_password =
            self.must_change(&owner.id)? && !self.exempt.lock().expect("exempt lock").contains(&cred.id);
        Ok(Session {
            csrf: csrf_of(token),
            id: cred.id,
            totp_enabled: self.totp_of(&owner.id)?.is_some(),
            must_change_password,
            username: owner.email,
            owner: owner.id,
        })
    }

    fn must_change(&self, owner: &OwnerId) -> Result<bool, AuthError> {
        Ok(self.store().secret(&must_change_name(owner))?.is_some())
    }

    /// From the next login on, the owner must change the password before
    /// anything else; every other session ends now. This session goes on.
    pub fn require_password_change(&self, session: &Session) -> Result<usize, AuthError> {
        self.store().put_secret(&must_change_name(&session.owner), &[1])?;
        self.exempt
            .lock()
            .expect("exempt lock")
            .insert(session.id.clone());
        let sessions = self.store().credentials_of(&principal(&session.owner), SESSION)?;
        let mut ended = 0;
        for c in sessions {
            if c.id != session.id && self.store().delete_credential(&c.id)? {
                self.last_seen.lock().expect("sessions lock").remove(&c.id);
                ended += 1;
            }
        }
        self.revocations.send_modify(|n| *n += 1);
        self.audit(AuditEvent::ok(
            AuditKind::PasswordChangeRequired,
            actor(session),
            format!("at the next login; {ended} other session(s) ended"),
        ));
        Ok(ended)
    }

    /// Issues the read-only metrics token, replacing any earlier one.
    /// Only its hash is kept; the token is shown once.
    pub fn issue_metrics_token(&self, by: Actor) -> Result<Secret, AuthError> {
        let token = random_token(128).map_err(internal)?;
        let mut store = self.store();
        let replaced =
            store.delete_credentials(crate::accounts::TOKEN_PRINCIPAL, crate::accounts::TOKEN_KIND)?;
        store.put_credential(
            crate::accounts::TOKEN_PRINCIPAL,
            crate::accounts::TOKEN_KIND,
            &TokenHash::of(token.expose()),
            None,
        )?;
        drop(store);
        self.audit(AuditEvent::ok(
            AuditKind::MetricsTokenIssued,
            by,
            if replaced > 0 {
                "the earlier token revoked"
            } else {
                "the first token"
            },
        ));
        Ok(token)
    }

    /// Revokes the metrics token, if there is one (a lockdown does).
    pub fn revoke_metrics_token(&self) -> Result<bool, AuthError> {
        let deleted = self
            .store()
            .delete_credentials(crate::accounts::TOKEN_PRINCIPAL, crate::accounts::TOKEN_KIND)?;
        Ok(deleted > 0)
    }

    /// Whether `token` is the current metrics token.
    pub fn metrics_token_valid(&self, token: &str) -> Result<bool, AuthError> {
        Ok(self
            .store()
            .find_credential(crate::accounts::TOKEN_KIND, &TokenHash::of(token))?
            .is_some())
    }

    /// For a lockdown: every owner must change the password at the next
    /// login. `keep` (the caller's session, if any) goes on as it is.
    /// Returns how many accounts are affected.
    pub fn require_password_change_everywhere(
        &self,
        keep: Option<&CredentialId>,
    ) -> Result<usize, AuthError> {
        let owners = self.store().owner_ids()?;
        for owner in &owners {
            self.store().put_secret(&must_change_name(owner), &[1])?;
        }
        if let Some(keep) = keep {
            self.exempt.lock().expect("exempt lock").insert(keep.clone());
        }
        Ok(owners.len())
    }

    pub fn logout(&self, session: &Session) -> Result<(), AuthError> {
        self.revoke(session, &session.id)?;
        Ok(())
    }

    /// The owner's live sessions, with where and in what browser each was
    /// opened when hearth has seen it since its start.
    pub fn sessions(&self, session: &Session) -> Result<Vec<SessionInfo>, AuthError> {
        let creds = self.store().credentials_of(&principal(&session.owner), SESSION)?;
        let seen = self.last_seen.lock().expect("sessions lock");
        let opened = self.opened.lock().expect("sessions lock");
        let (now_i, now_u) = (Instant::now(), unix_now());
        Ok(creds
            .into_iter()
            .map(|c| {
                let last = seen.get(&c.id).copied().unwrap_or(self.started);
                let last_seen = now_u.saturating_sub(now_i.duration_since(last).as_secs());
                let about = opened.get(&c.id).cloned();
                SessionInfo {
                    from: about.as_ref().map(|a| a.from),
                    browser: about.as_ref().and_then(|a| a.browser),
                    system: about.as_ref().and_then(|a| a.system),
                    id: c.id,
                    created: c.created_at,
                    last_seen,
                }
            })
            .collect())
    }

    /// Notes the browser a new session was opened in, from its
    /// User-Agent: only its family and system ([`browser::of`]).
    pub fn describe_session(&self, id: &CredentialId, user_agent: &str) {
        let (browser, system) = browser::of(user_agent);
        if let Some(o) = self.opened.lock().expect("sessions lock").get_mut(id) {
            o.browser = browser;
            o.system = system;
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Asks the signed-in owner for the password again (and a TOTP or
    /// recovery code when enrolled), under the login throttle, before an
    /// action that cannot be undone or that carries everything out.
    pub fn reauthenticate(
        &self,
        session: &Session,
        password: &str,
        code: Option<&str>,
        from: IpAddr,
        what: AuditKind,
    ) -> Result<(), AuthError> {
        match self.check_owner(&session.username, password, code, from) {
            Ok((owner, _)) if owner.id == session.owner => Ok(()),
            Ok(_) => Err(AuthError::WrongPassword),
            Err(e) => {
                self.audit(AuditEvent::refused(
                    what,
                    actor(session),
                    "password or code re-entry failed",
                ));
                // The session itself is fine: a 401 here would read as
                // "logged out" to the dashboard.
                Err(match e {
                    AuthError::BadCredentials => AuthError::WrongPassword,
                    AuthError::TotpRequired => AuthError::CodeNeeded,
                    other => other,
                })
            }
        }
    }

    /// Revokes one of the owner's sessions.
    pub fn revoke(&self, session: &Session, id: &CredentialId) -> Result<bool, AuthError> {
        let owns = self
            .store()
            .credentials_of(&principal(&session.owner), SESSION)?
            .iter()
            .any(|c| c.id == *id);
        if !owns {
            return Ok(false);
        }
        self.store().delete_credential(id)?;
        self.last_seen.lock().expect("sessions lock").remove(id);
        self.revocations.send_modify(|n| *n += 1);
        self.audit(AuditEvent::ok(
            if *id == session.id {
                AuditKind::Logout
            } else {
                AuditKind::SessionRevoked
            },
            actor(session),
            format!("session {}", id.as_str()),
        ));
        Ok(true)
    }

    pub fn change_password(&self, session: &Session, current: &str, new: &str) -> Result<(), AuthError> {
        let owner = self
            .store()
            .owner(&session.owner)?
            .ok_or(AuthError::Unauthenticated)?;
        let key = format!(
            "user:{}",
            hex::encode(&TokenHash::of(&owner.email).as_bytes()[..8])
        );
        self.reserve(&[&key])?;
        if !secret::verify_password(current, owner.password_hash.expose()).unwrap_or(false) {
            self.audit(AuditEvent::refused(
                AuditKind::PasswordChangeRefused,
                actor(session),
                "wrong current password",
            ));
            return Err(AuthError::WrongPassword);
        }
        self.succeed(&key);
        password::check(new, &owner.email).map_err(|e| AuthError::Policy(e.to_string()))?;
        let hash = Secret::new(secret::hash_password(new).map_err(internal)?);
        self.store().set_owner_password(&owner.id, &hash)?;
        // Every other session ends with the old password.
        // Collected first: the store's lock must be free again before the
        // loop deletes through it.
        let sessions = self.store().credentials_of(&principal(&owner.id), SESSION)?;
        for c in sessions {
            if c.id != session.id {
                self.store().delete_credential(&c.id)?;
                self.last_seen.lock().expect("sessions lock").remove(&c.id);
            }
        }
        self.store().delete_secret(&must_change_name(&owner.id))?;
        self.exempt.lock().expect("exempt lock").clear();
        self.audit(AuditEvent::ok(
            AuditKind::PasswordChanged,
            actor(session),
            "other sessions ended",
        ));
        Ok(())
    }

    /// Starts enrolling again, on a new phone, when two-factor
    /// authentication is on: the current password is asked first. The old
    /// secret and recovery codes keep working until the new one is
    /// confirmed.
    pub fn reenroll(&self, session: &Session, password: &str) -> Result<(String, String), AuthError> {
        let owner = self
            .store()
            .owner(&session.owner)?
            .ok_or(AuthError::Unauthenticated)?;
        let key = format!(
            "user:{}",
            hex::encode(&TokenHash::of(&owner.email).as_bytes()[..8])
        );
        self.reserve(&[&key])?;
        if !secret::verify_password(password, owner.password_hash.expose()).unwrap_or(false) {
            self.audit(AuditEvent::refused(
                AuditKind::TotpReset,
                actor(session),
                "wrong password",
            ));
            return Err(AuthError::WrongPassword);
        }
        self.succeed(&key);
        self.enroll_new(session)
    }

    /// Starts TOTP enrolment: a new secret, kept until confirmed. Refused
    /// when two-factor authentication is on (see [`Auth::reenroll`]).
    pub fn enroll(&self, session: &Session) -> Result<(String, String), AuthError> {
        if self.totp_of(&session.owner)?.is_some() {
            return Err(AuthError::Policy(
                "two-factor authentication is on: to move it to a new phone, set it up again with your password"
                    .into(),
            ));
        }
        self.enroll_new(session)
    }

    fn enroll_new(&self, session: &Session) -> Result<(String, String), AuthError> {
        let secret = TotpSecret::generate();
        let uri = totp::otpauth_uri(&secret, &session.username, "hearth");
        let text = secret.to_base32();
        self.enrolling
            .lock()
            .expect("enrol lock")
            .insert(session.id.clone(), secret);
        Ok((text, uri))
    }

    /// The QR code of the pending enrolment, as SVG.
    pub fn enrollment_qr(&self, session: &Session) -> Result<String, AuthError> {
        let enrolling = self.enrolling.lock().expect("enrol lock");
        let secret = enrolling.get(&session.id).ok_or(AuthError::NoEnrolment)?;
        Ok(totp::qr_svg(&totp::otpauth_uri(
            secret,
            &session.username,
            "hearth",
        )))
    }

    /// Confirms enrolment with a code; returns ten recovery codes, once.
    pub fn confirm(&self, session: &Session, code: &str) -> Result<Vec<Secret>, AuthError> {
        let secret = self
            .enrolling
            .lock()
            .expect("enrol lock")
            .get(&session.id)
            .map(|s| TotpSecret::from_bytes(s.as_bytes()))
            .ok_or(AuthError::NoEnrolment)?;
        let step = totp::verify(&secret, code.trim(), unix_now(), None).ok_or(AuthError::BadCode)?;
        let moved = self.totp_of(&session.owner)?.is_some();
        self.store_totp(&session.owner, &secret, Some(step))?;
        self.enrolling.lock().expect("enrol lock").remove(&session.id);
        let codes = totp::recovery_codes();
        let owner = principal(&session.owner);
        let mut store = self.store();
        store.delete_credentials(&owner, RECOVERY)?;
        for c in &codes {
            store.put_credential(
                &owner,
                RECOVERY,
                &TokenHash::of(&totp::normalize_recovery(c.expose())),
                None,
            )?;
        }
        drop(store);
        // A move to a new phone is a change of the second factor, told
        // apart from the first enrolment.
        self.audit(if moved {
            AuditEvent::ok(
                AuditKind::TotpReset,
                actor(session),
                "moved to a new phone; ten new recovery codes issued",
            )
        } else {
            AuditEvent::ok(
                AuditKind::TotpEnrolled,
                actor(session),
                "ten recovery codes issued",
            )
        });
        Ok(codes)
    }

    fn use_recovery(&self, owner: &OwnerId, code: &str) -> Result<bool, AuthError> {
        let hash = TokenHash::of(&totp::normalize_recovery(code));
        let mut store = self.store();
        match store.find_credential(RECOVERY, &hash)? {
            Some(c) if c.principal == principal(owner) => Ok(store.delete_credential(&c.id)?),
            _ => Ok(false),
        }
    }

    /// The owner's TOTP secret and the last step used, if enrolled.
    fn totp_of(&self, owner: &OwnerId) -> Result<Option<(TotpSecret, Option<u64>)>, AuthError> {
        let Some(bytes) = self.store().secret(&totp_name(owner))? else {
            return Ok(None);
        };
        if bytes.len() != 28 {
            return Err(AuthError::Internal("stored TOTP secret is malformed".into()));
        }
        let last = u64::from_be_bytes(bytes[20..28].try_into().expect("8 bytes"));
        Ok(Some((
            TotpSecret::from_bytes(&bytes[..20]),
            (last != u64::MAX).then_some(last),
        )))
    }

    fn store_totp(&self, owner: &OwnerId, secret: &TotpSecret, last: Option<u64>) -> Result<(), AuthError> {
        let mut bytes = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
        bytes.extend_from_slice(&last.unwrap_or(u64::MAX).to_be_bytes());
        self.store().put_secret(&totp_name(owner), &bytes)?;
        Ok(())
    }

    /// Reserves one attempt on every key before the slow password hash:
    /// the attempt counts as a failure from now on, so however many arrive
    /// at once, only [`self::throttle::FREE_FAILURES`] reach the check before the
    /// back-off starts. A success clears the keys ([`Auth::succeed`]); an
    /// attempt that turns out not to be a guess is given back
    /// ([`Auth::refund`]).
    fn reserve(&self, keys: &[&str]) -> Result<(), AuthError> {
        let reserved = self
            .throttle
            .lock()
            .expect("throttle lock")
            .reserve(keys, Instant::now());
        if reserved.is_err() {
            crate::accounts::Counters::bump(&self.counters.login_throttled);
        }
        reserved.map_err(AuthError::Throttled)
    }

    fn refund(&self, key: &str) {
        self.throttle
            .lock()
            .expect("throttle lock")
            .refund(key, Instant::now());
    }

    fn succeed(&self, key: &str) {
        self.throttle.lock().expect("throttle lock").success(key);
    }

    /// Whether any owner turned on two-factor authentication: the rule
    /// for enabling the voice relay (`Relay::may_enable`).
    pub fn any_owner_has_two_factor(&self) -> Result<bool, AuthError> {
        let owners = self.store().owner_ids()?;
        for id in owners {
            if self.totp_of(&id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends to the sealed audit table; a failure is logged, not fatal.
    pub fn audit(&self, e: AuditEvent) {
        if let Err(error) = self.store().append_audit(&e) {
            tracing::error!(%error, event = e.kind.name(), "could not write the audit log");
        }
    }

    /// Runs `f` on the store.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut self.store())
    }

    /// How long an idle session lives.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Changes whenever sessions are revoked.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Revokes every dashboard session but `except` (the caller's, from
    /// the dashboard; none from the CLI); returns how many ended. Open
    /// event streams of the revoked sessions end at once.
    pub fn revoke_all(&self, except: Option<&CredentialId>) -> Result<usize, AuthError> {
        let all = self.store().credentials_of_kind(SESSION)?;
        let mut ended = 0;
        for (cred, _) in all {
            if Some(&cred.id) == except {
                continue;
            }
            if self.store().delete_credential(&cred.id)? {
                ended += 1;
            }
            self.last_seen.lock().expect("sessions lock").remove(&cred.id);
        }
        self.revocations.send_modify(|n| *n += 1);
        Ok(ended)
    }

    /// Whether a session is still live (not revoked, logged out or idle).
    pub fn session_alive(&self, id: &CredentialId) -> Result<(), AuthError> {
        let seen = self.last_seen.lock().expect("sessions lock");
        match seen.get(id) {
            Some(last) if last.elapsed() <= self.idle => Ok(()),
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// Drops sessions past their absolute expiry from the store.
    pub fn sweep(&self) {
        let _ = self.store().delete_expired_credentials();
    }
}

fn principal(owner: &OwnerId) -> String {
    format!("owner:{}", owner.as_str())
}

fn must_change_name(owner: &OwnerId) -> String {
    format!("password_change:{}", owner.as_str())
}

fn totp_name(owner: &OwnerId) -> String {
    format!("totp:{}", owner.as_str())
}

/// The CSRF token of a session: only someone holding the (HttpOnly) session
/// token can compute it.
pub fn csrf_of(token: &str) -> String {
    hex::encode(&TokenHash::of(&format!("hearth-csrf:{token}")).as_bytes()[..16])
}

fn internal(e: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(e.to_string())
}

/// Unix seconds. (The store's `UnixTime` counts milliseconds.)
pub fn unix_now() -> u64 {
    unix_secs(UnixTime::now())
}

/// A store time in unix seconds, as the API and TOTP count.
pub fn unix_secs(t: UnixTime) -> u64 {
    (t.0 / 1000).max(0) as u64
}

/// Twelve characters from an unambiguous alphabet (about 60 bits), shown
/// as `XXXX-XXXX-XXXX`.
fn setup_code() -> Result<Secret, AuthError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(14);
    let mut taken = 0;
    while taken < 12 {
        let mut bytes = [0u8; 16];
        crate::store::crypto::fill_random(&mut bytes).map_err(internal)?;
        // Bytes of 248 and over are skipped, so every letter is equally
        // likely (248 = 8 × 31).
        for b in bytes.iter().filter(|b| usize::from(**b) < 248) {
            if taken == 12 {
                break;
            }
            if taken > 0 && taken % 4 == 0 {
                out.push('-');
            }
            out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
            taken += 1;
        }
    }
    Ok(Secret::new(out))
}

fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Where and in what a session was opened. No `Debug`: the address is
/// the owner's.
#[derive(Clone)]
struct Opened {
    from: IpAddr,
    browser: Option<&'static str>,
    system: Option<&'static str>,
}

/// One of the owner's sessions, for their list. No `Debug`: the address is
/// the owner's.
pub struct SessionInfo {
    pub id: CredentialId,
    pub created: UnixTime,
    /// Unix seconds.
    pub last_seen: u64,
    /// Where it was opened from, when opened since hearth started.
    pub from: Option<IpAddr>,
    /// The browser's family ("Firefox"), when known.
    pub browser: Option<&'static str>,
    /// The operating system's family ("Android"), when known.
    pub system: Option<&'static str>,
}
