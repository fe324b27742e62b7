//! Test helper: takes the sockets systemd (or `systemd-socket-activate`)
//! passed under the name in its first argument, with hearth's own
//! `net::activation::take`, takes the same name again, and prints one line:
//! `udp=<n> tcp=<n> again=<n> env=<kept|removed>` (what the second take
//! returned, and whether LISTEN_FDS is still set), or `error: <message>`.

use hearth::net::activation;

fn main() {
    let name = std::env::args()
        .nth(1)
        .expect("usage: hearth-activation-probe NAME");
    let passed = match activation::take(&name) {
        Ok(passed) => passed,
        Err(e) => {
            println!("error: {e}");
            return;
        }
    };
    let again = activation::take(&name).expect("the second take");
    let env = if std::env::var_os("LISTEN_FDS").is_some() {
        "kept"
    } else {
        "removed"
    };
    println!(
        "udp={} tcp={} again={} env={env}",
        passed.udp.len(),
        passed.tcp.len(),
        again.udp.len() + again.tcp.len()
    );
}
