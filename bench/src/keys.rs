//! `bench/run keys`: the passphrase KDF, a data key rotation, and a backup
//! round trip, on a store of 10,000 devices.

use std::time::{Duration, Instant};

use hearth::store::crypto::Kdf;
use hearth::store::{Actor, DataDir, DeviceFields, DeviceKind, MasterKey, Store};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(rounds: usize) {
    let rounds = rounds.max(3);
    println!("\n## keys: {rounds} rounds; medians");

    // The KDF, against the dashboard's password hash (argon2id, 19 MiB,
    // t=2) in the same run.
    let kdf = Kdf::generate().unwrap();
    let light = Kdf {
        m_kib: 19 * 1024,
        t: 2,
        ..kdf.clone()
    };
    let (mut ours, mut login) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        kdf.derive(b"a long store passphrase").unwrap();
        ours.push(t.elapsed());
        let t = Instant::now();
        light.derive(b"a long store passphrase").unwrap();
        login.push(t.elapsed());
    }
    let (o, l) = (median(ours), median(login));
    println!(
        "argon2id {} MiB t={} p={}: {:.0} ms; the login hash (19 MiB, t=2): {:.0} ms; ratio {:.2}x",
        kdf.m_kib / 1024,
        kdf.t,
        kdf.p,
        o.as_secs_f64() * 1e3,
        l.as_secs_f64() * 1e3,
        o.as_secs_f64() / l.as_secs_f64()
    );

    // Rotation of a 10,000-device store, batch by batch; and the longest a
    // batch holds the store (what a device's write may wait).
    let (mut whole, mut longest, mut rows) = (Vec::new(), Vec::new(), 0);
    let (mut backup, mut restore, mut size) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.create_private().unwrap();
        let key_path = data.default_key_path();
        let master: MasterKey = hearth::store::files::write_new_key(&key_path).unwrap();
        let mut s = Store::create(&data.db_path(), &master).unwrap();
        for i in 0..10_000 {
            let mut f = DeviceFields::new(DeviceKind::Bulb, "tasmota");
            f.nickname = Some(format!("lamp {i}"));
            f.mac = Some(format!("aa:bb:cc:00:{:02x}:{:02x}", i / 256, i % 256));
            s.insert_device(&f).unwrap();
        }
        let t = Instant::now();
        s.begin_rotation().unwrap();
        let mut worst = Duration::ZERO;
        loop {
            let b = Instant::now();
            let p = s
                .rotate_batch(hearth::safety::rotate::BATCH, &Actor::Cli)
                .unwrap();
            worst = worst.max(b.elapsed());
            if p.finished {
                rows = p.total;
                break;
            }
        }
        whole.push(t.elapsed());
        longest.push(worst);
        drop(s);

        let t = Instant::now();
        let contents = hearth::safety::backup::Contents {
            db: hearth::safety::backup::snapshot(&data).unwrap(),
            config: None,
            master_key: Some(zeroize::Zeroizing::new(std::fs::read(&key_path).unwrap())),
        };
        let sealed = hearth::safety::backup::seal(&contents, "a long backup passphrase").unwrap();
        backup.push(t.elapsed());
        size = sealed.len();
        let t = Instant::now();
        let opened = hearth::safety::backup::open(&sealed, "a long backup passphrase", "bench").unwrap();
        let target = DataDir::new(dir.path().join("restored"));
        hearth::safety::backup::restore(&opened, &target, None, |_| {}).unwrap();
        restore.push(t.elapsed());
    }
    let w = median(whole);
    println!(
        "rotation of {rows} rows: {:.0} ms ({:.0} rows/s); longest batch ({} rows) holding the store: {:.1} ms",
        w.as_secs_f64() * 1e3,
        rows as f64 / w.as_secs_f64(),
        hearth::safety::rotate::BATCH,
        median(longest).as_secs_f64() * 1e3
    );
    println!(
        "backup of 10,000 devices ({:.1} MiB file): create {:.0} ms, restore (open, check every value, swap) {:.0} ms",
        size as f64 / 1048576.0,
        median(backup).as_secs_f64() * 1e3,
        median(restore).as_secs_f64() * 1e3
    );
}
