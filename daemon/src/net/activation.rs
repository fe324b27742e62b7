//! The sockets systemd passes to hearth (socket activation, the
//! `sd_listen_fds` protocol, by hand): `systemd/hearth.socket` binds a port
//! hearth may not bind itself (53, for the resolver) and hands the bound
//! sockets over, so the service needs no capability.
//!
//! It takes only the descriptors systemd names with the caller's name, and
//! only UDP sockets and listening TCP sockets of IPv4 or IPv6; anything else
//! is refused with the descriptor's number and what it is, never a panic.
//! It never logs an address.
//!
//! The protocol: `LISTEN_PID` must be this process's id (otherwise nothing
//! is ours, as with `sd_listen_fds`), `LISTEN_FDS` counts the descriptors,
//! which start at 3, and `LISTEN_FDNAMES` names them, colon-separated, from
//! each socket unit's `FileDescriptorName=` (all "unknown" when it is unset,
//! as `sd_listen_fds_with_names` says).
//!
//! The rules for the environment and for taking twice:
//! - The variables are read once per process, at the first [`take`], and
//!   the listing is kept; every later [`take`] works from that listing, so
//!   taking "dns" first does not stop a later take of another name.
//! - A descriptor is handed out at most once per process: a second take of
//!   the same name returns nothing more.
//! - The variables are removed once every passed descriptor has been taken,
//!   and only while the process has a single thread (removing a variable
//!   races any thread reading the environment outside Rust's lock). Left in
//!   place they are harmless: `LISTEN_PID` names this process, so no child
//!   would take the descriptors. Call [`take`] where the other listeners
//!   are bound, before the runtime starts its threads.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The name `sd_listen_fds_with_names` gives every descriptor when
/// `LISTEN_FDNAMES` is not set.
const UNNAMED: &str = "unknown";

/// The sockets passed under one name, ready to serve. They are blocking,
/// as systemd passes them; call `set_nonblocking(true)` before handing one
/// to tokio.
#[derive(Debug, Default)]
pub struct Passed {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
}

impl Passed {
    pub fn is_empty(&self) -> bool {
        self.udp.is_empty() && self.tcp.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_PID={0:?} is not a process id")]
    BadPid(String),
    #[error("LISTEN_FDS={0:?} is not a count of descriptors")]
    BadCount(String),
    #[error("LISTEN_FDNAMES names {names} descriptors, but LISTEN_FDS says {count}")]
    NamesMismatch { names: usize, count: usize },
    #[error(
        "passed descriptor {fd} is {what}; hearth takes only UDP sockets and listening TCP sockets (IPv4 or IPv6)"
    )]
    Unsupported { fd: RawFd, what: String },
    #[error("passed descriptor {fd}: {source}")]
    Io { fd: RawFd, source: std::io::Error },
}

/// The sockets systemd passed under `name` (its `FileDescriptorName=`),
/// taken out of the process-wide listing: a second call for the same name
/// returns nothing more. Nothing was passed, or passed to another process:
/// an empty [`Passed`]. If one descriptor under `name` is not a socket
/// hearth can serve, none is taken and the error names it.
pub fn take(name: &str) -> Result<Passed, ActivationError> {
    static LISTING: Mutex<Option<Listing>> = Mutex::new(None);
    let mut guard = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let var = |k: &str| std::env::var(k).ok();
        let entries = parse(
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        )?;
        *guard = Some(Listing::new(entries));
    }
    let listing = guard.as_mut().expect("set above");
    let passed = listing.take(name)?;
    if listing.all_taken() && !listing.env_removed && single_threaded() {
        // SAFETY: this process has one thread (checked just above), so no
        // other thread reads the environment while it changes.
        unsafe {
            std::env::remove_var("LISTEN_PID");
            std::env::remove_var("LISTEN_FDS");
            std::env::remove_var("LISTEN_FDNAMES");
        }
        listing.env_removed = true;
    }
    Ok(passed)
}

/// The local address of every socket in `passed`, UDP first (those the
/// kernel can tell; for the owner's status, never for a log).
pub fn local_addrs(passed: &Passed) -> Vec<SocketAddr> {
    let udp = passed.udp.iter().filter_map(|s| s.local_addr().ok());
    let tcp = passed.tcp.iter().filter_map(|s| s.local_addr().ok());
    udp.chain(tcp).collect()
}

/// The passed descriptors and their names, from the three variables as
/// they are (None: unset), for a process whose id is `our_pid`.
fn parse(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Vec<(RawFd, String)>, ActivationError> {
    // As sd_listen_fds: no LISTEN_PID, or another process's, and nothing
    // is ours (a parent's sockets leaking into hearth are not for it).
    let Some(pid) = pid else { return Ok(Vec::new()) };
    let pid: u32 = number(pid).ok_or_else(|| ActivationError::BadPid(pid.to_owned()))?;
    if pid != our_pid {
        return Ok(Vec::new());
    }
    let Some(fds) = fds else { return Ok(Vec::new()) };
    let count: usize = number(fds).ok_or_else(|| ActivationError::BadCount(fds.to_owned()))?;
    // The last descriptor must be a descriptor number.
    if RawFd::try_from(count)
        .ok()
        .and_then(|c| c.checked_add(FIRST_FD))
        .is_none()
    {
        return Err(ActivationError::BadCount(fds.to_owned()));
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = match names {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => vec![UNNAMED.to_owned(); count],
    };
    if names.len() != count {
        return Err(ActivationError::NamesMismatch {
            names: names.len(),
            count,
        });
    }
    Ok((FIRST_FD..).zip(names).collect())
}

/// A plain decimal number: no sign, no spaces (`str::parse` takes a `+`).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One passed descriptor: its number, its name, and whether it was handed
/// out.
#[derive(Debug)]
struct Entry {
    fd: RawFd,
    name: String,
    taken: bool,
}

/// What systemd passed this process, and what has been taken of it.
#[derive(Debug)]
struct Listing {
    entries: Vec<Entry>,
    env_removed: bool,
}

impl Listing {
    fn new(entries: Vec<(RawFd, String)>) -> Listing {
        let entries = entries
            .into_iter()
            .map(|(fd, name)| Entry {
                fd,
                name,
                taken: false,
            })
            .collect();
        Listing {
            entries,
            env_removed: false,
        }
    }

    /// Every untaken descriptor named `name`, all or none: each is
    /// classified (and made close-on-exec) first, and only if all pass are
    /// they owned and marked.
    fn take(&mut self, name: &str) -> Result<Passed, ActivationError> {
        let mut kinds = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.taken || entry.name != name {
                continue;
            }
            let kind = classify(entry.fd)?;
            set_cloexec(entry.fd)?;
            kinds.push((i, kind));
        }
        let mut passed = Passed::default();
        for (i, kind) in kinds {
            let entry = &mut self.entries[i];
            entry.taken = true;
            // SAFETY: systemd passed this descriptor to this process, it is
            // the socket classify() says, and `taken` makes this the one
            // owner it is ever handed to.
            match kind {
                Kind::Udp => passed.udp.push(unsafe { UdpSocket::from_raw_fd(entry.fd) }),
                Kind::TcpListener => passed.tcp.push(unsafe { TcpListener::from_raw_fd(entry.fd) }),
            }
        }
        Ok(passed)
    }

    fn all_taken(&self) -> bool {
        self.entries.iter().all(|e| e.taken)
    }
}

/// What a passed descriptor may be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Udp,
    TcpListener,
}

/// What `fd` is, if hearth can serve it: a UDP socket, or a TCP socket
/// that listens, of IPv4 or IPv6. It only looks; it takes nothing.
fn classify(fd: RawFd) -> Result<Kind, ActivationError> {
    let unsupported = |what: String| ActivationError::Unsupported { fd, what };
    let kind = match sockopt(fd, libc::SO_TYPE) {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err(unsupported(format!("not a socket but {}", file_type(fd))));
        }
        Err(source) => return Err(ActivationError::Io { fd, source }),
    };
    let io = |source| ActivationError::Io { fd, source };
    let family = sockopt(fd, libc::SO_DOMAIN).map_err(io)?;
    let family_name = match family {
        libc::AF_INET => "an IPv4",
        libc::AF_INET6 => "an IPv6",
        libc::AF_UNIX => return Err(unsupported(format!("a Unix {} socket", type_name(kind)))),
        other => {
            return Err(unsupported(format!(
                "a {} socket of family {other}",
                type_name(kind)
            )));
        }
    };
    let protocol = sockopt(fd, libc::SO_PROTOCOL).map_err(io)?;
    match (kind, protocol) {
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP) => Ok(Kind::Udp),
        (libc::SOCK_STREAM, libc::IPPROTO_TCP | libc::IPPROTO_MPTCP) => {
            if sockopt(fd, libc::SO_ACCEPTCONN).map_err(io)? == 1 {
                Ok(Kind::TcpListener)
            } else {
                Err(unsupported(format!(
                    "{family_name} stream socket that is not listening"
                )))
            }
        }
        (kind, protocol) => Err(unsupported(format!(
            "{family_name} {} socket of protocol {protocol}",
            type_name(kind)
        ))),
    }
}

fn type_name(kind: libc::c_int) -> String {
    match kind {
        libc::SOCK_STREAM => "stream".to_owned(),
        libc::SOCK_DGRAM => "datagram".to_owned(),
        libc::SOCK_SEQPACKET => "sequential-packet".to_owned(),
        libc::SOCK_RAW => "raw".to_owned(),
        other => format!("type-{other}"),
    }
}

/// What a descriptor that is not a socket is, for the error.
fn file_type(fd: RawFd) -> String {
    // SAFETY: fstat writes into the zeroed stat it is given; a closed
    // descriptor makes it fail, nothing worse.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return format!("unreadable ({})", std::io::Error::last_os_error());
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => "a pipe".to_owned(),
        libc::S_IFREG => "a regular file".to_owned(),
        libc::S_IFDIR => "a directory".to_owned(),
        libc::S_IFCHR => "a character device".to_owned(),
        libc::S_IFBLK => "a block device".to_owned(),
        libc::S_IFLNK => "a symbolic link".to_owned(),
        other => format!("a file of mode {other:o}"),
    }
}

/// An integer socket option at SOL_SOCKET.
fn sockopt(fd: RawFd, option: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for the int-sized write asked for.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(value)
}

/// systemd passes its sockets without FD_CLOEXEC; hearth's children (none
/// today) must not inherit them.
fn set_cloexec(fd: RawFd) -> Result<(), ActivationError> {
    let io = |source| ActivationError::Io { fd, source };
    // SAFETY: fcntl on a descriptor number; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether this process has one thread, from /proc/self/stat (the unit's
/// ProcSubset=pid keeps it). Unknown counts as no.
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| threads_in(&stat))
        == Some(1)
}

/// The thread count in a /proc/<pid>/stat line. The command name may hold
/// spaces and parentheses; the fields after its last ')' are fixed: state
/// is the 3rd field of the line, num_threads the 20th.
fn threads_in(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(17)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    const PID: u32 = 4242;

    fn check(
        pid: Option<&str>,
        fds: Option<&str>,
        names: Option<&str>,
        expect: Result<Vec<(RawFd, &str)>, &str>,
    ) {
        let got = parse(pid, fds, names, PID)
            .map(|v| v.into_iter().collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        let expect = expect
            .map(|v| {
                v.into_iter()
                    .map(|(fd, n)| (fd, n.to_owned()))
                    .collect::<Vec<_>>()
            })
            .map_err(str::to_owned);
        match (&got, &expect) {
            (Err(g), Err(e)) => assert!(g.contains(e.as_str()), "{pid:?} {fds:?} {names:?}: {g}"),
            _ => assert_eq!(got, expect, "{pid:?} {fds:?} {names:?}"),
        }
    }

    #[test]
    fn the_environment_is_parsed_as_sd_listen_fds_with_names_does() {
        // Ours, named.
        check(
            Some("4242"),
            Some("2"),
            Some("dns:dns"),
            Ok(vec![(3, "dns"), (4, "dns")]),
        );
        check(
            Some("4242"),
            Some("3"),
            Some("dns:web:dns"),
            Ok(vec![(3, "dns"), (4, "web"), (5, "dns")]),
        );
        // Unnamed: each is "unknown".
        check(Some("4242"), Some("1"), None, Ok(vec![(3, "unknown")]));
        // An empty name is a name.
        check(
            Some("4242"),
            Some("2"),
            Some(":dns"),
            Ok(vec![(3, ""), (4, "dns")]),
        );
        // Another process's sockets, or none: nothing is ours, whatever
        // the rest says.
        check(Some("4243"), Some("2"), Some("dns:dns"), Ok(vec![]));
        check(Some("4243"), Some("many"), None, Ok(vec![]));
        check(None, Some("2"), Some("dns:dns"), Ok(vec![]));
        check(None, None, None, Ok(vec![]));
        check(Some("4242"), None, None, Ok(vec![]));
        check(Some("4242"), Some("0"), None, Ok(vec![]));
        check(Some("4242"), Some("0"), Some(""), Ok(vec![]));
        // Count and names disagree.
        check(
            Some("4242"),
            Some("2"),
            Some("dns"),
            Err("names 1 descriptors, but LISTEN_FDS says 2"),
        );
        check(
            Some("4242"),
            Some("1"),
            Some("dns:dns"),
            Err("names 2 descriptors, but LISTEN_FDS says 1"),
        );
        check(Some("4242"), Some("2"), Some(""), Err("names 1 descriptors"));
        // Garbage numbers.
        for bad in [
            "",
            "x",
            "-1",
            "+1",
            " 1",
            "1 ",
            "0x3",
            "99999999999999999999",
            "2147483645",
        ] {
            check(
                Some("4242"),
                Some(bad),
                None,
                Err("is not a count of descriptors"),
            );
        }
        for bad in ["", "abc", "-4242", "+4242", "4242 "] {
            check(Some(bad), Some("1"), None, Err("is not a process id"));
        }
    }

    #[test]
    fn a_udp_socket_and_a_tcp_listener_are_taken_in_both_families() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(classify(udp.as_raw_fd()).unwrap(), Kind::Udp);
        assert_eq!(classify(tcp.as_raw_fd()).unwrap(), Kind::TcpListener);
        let udp6 = UdpSocket::bind("[::1]:0").unwrap();
        let tcp6 = TcpListener::bind("[::1]:0").unwrap();
        assert_eq!(classify(udp6.as_raw_fd()).unwrap(), Kind::Udp);
        assert_eq!(classify(tcp6.as_raw_fd()).unwrap(), Kind::TcpListener);
    }

    fn refused(fd: RawFd, what: &str) {
        let err = classify(fd).unwrap_err().to_string();
        assert!(err.contains(&format!("descriptor {fd} is {what}")), "{err}");
    }

    #[test]
    fn pipes_unix_sockets_and_connected_streams_are_refused_by_number() {
        let mut pipe = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the pipe's ends are ours alone; the OwnedFds close them.
        let ends = unsafe {
            [
                std::os::fd::OwnedFd::from_raw_fd(pipe[0]),
                std::os::fd::OwnedFd::from_raw_fd(pipe[1]),
            ]
        };
        refused(ends[0].as_raw_fd(), "not a socket but a pipe");

        let file = tempfile::tempfile().unwrap();
        refused(file.as_raw_fd(), "not a socket but a regular file");

        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        refused(a.as_raw_fd(), "a Unix datagram socket");
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        refused(unix.as_raw_fd(), "a Unix stream socket");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        refused(stream.as_raw_fd(), "an IPv4 stream socket that is not listening");
    }

    #[test]
    fn a_descriptor_is_handed_out_once_and_other_names_stay_for_later() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let web = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = vec![udp.local_addr().unwrap(), tcp.local_addr().unwrap()];
        let web_addr = web.local_addr().unwrap();
        let mut listing = Listing::new(vec![
            (udp.into_raw_fd(), "dns".to_owned()),
            (web.into_raw_fd(), "web".to_owned()),
            (tcp.into_raw_fd(), "dns".to_owned()),
        ]);
        let dns = listing.take("dns").unwrap();
        assert_eq!((dns.udp.len(), dns.tcp.len()), (1, 1));
        assert_eq!(local_addrs(&dns), addrs);
        // FD_CLOEXEC is set on what is taken.
        // SAFETY: fcntl on a descriptor the test owns.
        let flags = unsafe { libc::fcntl(dns.udp[0].as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        assert!(!listing.all_taken());
        assert!(listing.take("dns").unwrap().is_empty(), "handed out twice");
        assert!(listing.take("nothing").unwrap().is_empty());
        let other = listing.take("web").unwrap();
        assert_eq!(local_addrs(&other), vec![web_addr]);
        assert!(listing.all_taken());
    }

    #[test]
    fn a_name_with_one_bad_descriptor_takes_none() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (unix, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let udp_fd = udp.into_raw_fd();
        let mut listing = Listing::new(vec![
            (udp_fd, "dns".to_owned()),
            (unix.as_raw_fd(), "dns".to_owned()),
        ]);
        let err = listing.take("dns").unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "descriptor {} is a Unix datagram socket",
                unix.as_raw_fd()
            )),
            "{err}"
        );
        assert!(!listing.entries[0].taken);
        // SAFETY: the UDP socket was not handed out; the test owns it again.
        drop(unsafe { UdpSocket::from_raw_fd(udp_fd) });
    }

    #[test]
    fn nothing_passed_takes_nothing() {
        // The test process has no LISTEN_* for itself.
        assert!(take("dns").unwrap().is_empty());
    }

    #[test]
    fn the_thread_count_is_read_past_the_command_name() {
        let line = "77 (a) b (c)) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 5 6 7";
        assert_eq!(threads_in(line), Some(3));
        assert_eq!(threads_in("77 (a) S 1"), None);
        // Another thread, held alive while this one looks.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(!single_threaded());
        drop(tx);
        let _ = other.join();
    }
}
