//! The egress bridge, against a local mosquitto playing the upstream
//! cluster broker, over TLS with its own CA.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::harness::{Daemon, TestHome, mosquitto_args, run, text, tool};

/// A mosquitto with a TLS listener, one user, and an ACL limited to the
/// bridge's prefix. Killed on drop.
struct Upstream {
    child: Child,
    port: u16,
    ca: std::path::PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstream(home: &TestHome) -> Upstream {
    let dir = home.path("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "upstream test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();

    std::fs::write(dir.join("passwd"), "house1:upstream-secret\nwatcher:watch\n").unwrap();
    let out = run(
        tool("mosquitto_passwd").arg("-U").arg(dir.join("passwd")),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(
        dir.join("acl"),
        "user house1\ntopic write homes/house-1/#\nuser watcher\ntopic read #\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "user root\nallow_anonymous false\npassword_file {d}/passwd\nacl_file {d}/acl\npersistence false\n\
         log_dest none\nlistener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = dir.display()
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = tool("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Upstream {
        child,
        port,
        ca: dir.join("ca.pem"),
    }
}

#[test]
fn bridge_forwards_allowed_state_upstream_and_nothing_else() {
    let home = TestHome::new();
    let up = upstream(&home);
    let daemon = Daemon::start_with(&format!(
        "[bridge]\nenabled = true\nupstream = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\nusername = \"house1\"\n\
         password = \"upstream-secret\"\nremote_prefix = \"homes/house-1\"\n",
        up.port,
        up.ca.display()
    ));
    let a = daemon.add("generic", "Lamp");
    let b = daemon.add("generic", "Camera");

    // Watch everything upstream.
    let watch = tool("mosquitto_sub")
        .args(["-h", "localhost", "-p", &up.port.to_string(), "--cafile"])
        .arg(&up.ca)
        .args(["-u", "watcher", "-P", "watch", "-t", "#", "-v", "-W", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let publish = |dev: &crate::harness::Device, topic: &str, payload: &str| {
        let out = run(
            tool("mosquitto_pub")
                .args(mosquitto_args(&daemon, dev))
                .args(["-q", "1", "-t", topic, "-m", payload]),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    publish(&a, &format!("{}/state", a.base()), "bridged-state");
    publish(&a, &format!("{}/private", a.base()), "not-a-bridged-topic");
    // Device A may not publish B's state: denied locally, and never bridged.
    publish(&a, &format!("{}/state", b.base()), "spoofed-state");

    let out = crate::harness::wait_output(watch, Duration::from_secs(20));
    let seen = text(&out.stdout);
    assert!(
        seen.contains(&format!("homes/house-1/{}/state bridged-state", a.base())),
        "upstream saw: {seen:?}; stderr {}; hearth log {}",
        text(&out.stderr),
        daemon.log()
    );
    assert!(!seen.contains("not-a-bridged-topic"), "{seen}");
    assert!(
        !seen.contains("spoofed-state"),
        "a denied publish left the hub: {seen}"
    );
    // The upstream password never reaches the log.
    assert!(!daemon.log().contains("upstream-secret"));
    assert!(daemon.log().contains("protection lowered by configuration"));
}
