//! Test helper: opens (or creates) the store in DATA_DIR and writes to it as
//! fast as it can, printing a line for every write once it has committed:
//! `device <id> <nickname>` or `credential <hex hash>`. The kill -9 test
//! kills it mid-burst and then checks that every reported write survived.

use std::io::Write;

use hearth::store::secret::{TokenHash, random_token};
use hearth::store::{DataDir, DeviceFields, DeviceKind};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: hearth-store-writer DATA_DIR");
    let mut store = hearth::store::open_or_init(&DataDir::new(dir), None).expect("open store");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for n in 0u64.. {
        if n % 4 == 3 {
            let token = random_token(128).expect("random");
            let hash = TokenHash::of(token.expose());
            store
                .put_credential("device:writer", "mqtt_password", &hash, None)
                .expect("credential");
            writeln!(out, "credential {}", hex::encode(hash.as_bytes())).expect("stdout");
        } else {
            let mut fields = DeviceFields::new(DeviceKind::Bulb, "generic");
            let nickname = format!("writer-{}-{n}", std::process::id());
            fields.nickname = Some(nickname.clone());
            let device = store.insert_device(&fields).expect("insert");
            writeln!(out, "device {} {nickname}", device.id).expect("stdout");
        }
        out.flush().expect("stdout");
    }
}
