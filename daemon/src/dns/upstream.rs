//! The upstream resolvers: those the owner configured, else the host's own
//! (`/etc/resolv.conf`). hearth never picks a public resolver itself, and
//! never forwards to itself.

use std::net::{IpAddr, SocketAddr};

/// The host's resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// What resolv.conf says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub nameservers: Vec<SocketAddr>,
    /// `domain` and `search`: the LAN's own domains.
    pub search: Vec<String>,
}

/// Reads resolv.conf's `nameserver`, `domain` and `search` lines; anything
/// else is ignored, as the C library does.
pub fn parse(text: &str) -> Host {
    let mut host = Host::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // An IPv6 address may carry a zone (`fe80::1%eth0`), which
                // hearth cannot forward to without the interface: skipped.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    host.nameservers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("domain") | Some("search") => {
                for w in words {
                    if let Some(d) = super::clouds::domain(w).or_else(|| single_label(w))
                        && !host.search.contains(&d)
                    {
                        host.search.push(d);
                    }
                }
            }
            _ => {}
        }
    }
    host
}

fn single_label(w: &str) -> Option<String> {
    let w = w.trim_matches('.').to_ascii_lowercase();
    (!w.is_empty() && w.len() <= 63 && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(w)
}

/// The upstreams hearth forwards to: `configured`, else the host's; never
/// an address hearth itself answers on (that would loop), and never one of
/// the unspecified addresses. `local` are the host's own addresses, which a
/// wildcard listener answers on.
pub fn choose(
    configured: &[SocketAddr],
    host: &Host,
    own: &[SocketAddr],
    local: &[IpAddr],
) -> Vec<SocketAddr> {
    let from = if configured.is_empty() {
        &host.nameservers
    } else {
        configured
    };
    from.iter()
        .copied()
        .filter(|u| !u.ip().is_unspecified() && u.port() != 0)
        .filter(|u| {
            !own.iter().any(|o| {
                o.port() == u.port()
                    && (o.ip() == u.ip()
                        || (o.ip().is_unspecified() && (u.ip().is_loopback() || local.contains(&u.ip()))))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_gives_nameservers_and_search_domains() {
        let host = parse(
            "# generated\nnameserver 192.168.1.1\nnameserver fd00::1 # router\n\
             nameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n\
             search fritz.box Home.Arpa\ndomain lan\n",
        );
        assert_eq!(
            host.nameservers,
            vec![
                "192.168.1.1:53".parse::<SocketAddr>().unwrap(),
                "[fd00::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(host.search, ["fritz.box", "home.arpa", "lan"]);
    }

    #[test]
    fn hearth_never_forwards_to_itself() {
        let host = parse("nameserver 192.168.1.2\nnameserver 127.0.0.53\nnameserver 192.168.1.1\n");
        let own: Vec<SocketAddr> = vec!["192.168.1.2:53".parse().unwrap()];
        assert_eq!(
            choose(&[], &host, &own, &[]),
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "192.168.1.1:53".parse().unwrap()
            ]
        );
        // Listening on every address: not loopback, nor the host's own.
        let any: Vec<SocketAddr> = vec!["[::]:53".parse().unwrap()];
        let local: Vec<IpAddr> = vec!["192.168.1.2".parse().unwrap()];
        assert_eq!(
            choose(&[], &host, &any, &local),
            vec!["192.168.1.1:53".parse::<SocketAddr>().unwrap()]
        );
        // Configured upstreams replace the host's.
        let configured: Vec<SocketAddr> = vec!["10.9.0.1:5353".parse().unwrap()];
        assert_eq!(choose(&configured, &host, &own, &[]), configured);
    }
}
