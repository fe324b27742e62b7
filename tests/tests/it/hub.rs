//! hearth's in-process hub link: it sees what devices publish (only what
//! the ACL allowed) and sends them commands.

use std::sync::Arc;
use std::time::Duration;

use hearth::broker::{Broker, Credentials, Limits, Listeners, Owner};
use hearth::home::devices::identity_of;
use hearth::net::pki::{self, TlsFiles};
use hearth::store::secret::TokenHash;
use hearth::store::{DataDir, DeviceFields, DeviceKind, DeviceStatus};
use rumqttc::{MqttOptions, QoS};

use crate::harness::TestHome;
use crate::mqtt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sees_allowed_publishes_and_commands_devices() {
    let home = TestHome::new();
    let mut store = hearth::store::open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
    pki::ensure(&mut store, &home.data_dir(), &pki::server_names(&[])).unwrap();
    let mut fields = DeviceFields::new(DeviceKind::Plug, "tasmota");
    fields.status = DeviceStatus::Adopted;
    fields.topic = Some("plug1".into());
    let password = "00112233445566778899aabbccddeeff";
    let (device, _) = store
        .insert_device_with_credential(
            hearth::store::DeviceId::generate().unwrap(),
            &fields,
            "mqtt_password",
            &TokenHash::of(password),
        )
        .unwrap();
    let creds = Arc::new(Credentials::new());
    creds.insert(
        device.id.to_string(),
        identity_of(&device, TokenHash::of(password)).unwrap(),
    );

    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    let listeners = Listeners {
        tls: vec![],
        plain: vec![plain],
    };
    let broker = Broker::start(
        listeners,
        &TlsFiles::in_dir(&home.data_dir()),
        Limits::default(),
        creds,
        None,
    )
    .await
    .unwrap();
    let mut hub = broker.subscribe_hub();

    let mut opts = MqttOptions::new(device.id.as_str(), "127.0.0.1", port);
    opts.set_credentials(device.id.as_str(), password);
    let mut plug = mqtt::connect(opts).await;
    plug.client
        .subscribe("cmnd/plug1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The device reports; the hub hears it, attributed to the device.
    plug.client
        .publish("stat/plug1/POWER", QoS::AtLeastOnce, false, "ON")
        .await
        .unwrap();
    // A publish outside its topics is dropped before the hub sees it.
    plug.client
        .publish("stat/plug2/POWER", QoS::AtLeastOnce, false, "OFF")
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), hub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.topic, "stat/plug1/POWER");
    assert_eq!(msg.payload.as_ref(), b"ON");
    assert_eq!(msg.from, Owner::Device(device.id.clone()));
    let next = tokio::time::timeout(Duration::from_millis(500), hub.recv()).await;
    assert!(next.is_err(), "the hub saw a denied publish: {next:?}");

    // The hub commands the device.
    broker
        .publish("cmnd/plug1/POWER", "OFF".into(), 1, false)
        .await
        .unwrap();
    let cmd = tokio::time::timeout(Duration::from_secs(5), plug.messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cmd.topic.as_str(), cmd.payload.as_ref()),
        ("cmnd/plug1/POWER", b"OFF".as_slice())
    );

    // hearth itself never publishes under $ or with wildcards.
    assert!(broker.publish("$SYS/x", "1".into(), 0, false).await.is_err());
    assert!(
        broker
            .publish("cmnd/+/POWER", "1".into(), 0, false)
            .await
            .is_err()
    );
    broker.shutdown().await;
    tokio::time::timeout(Duration::from_secs(2), plug.closed)
        .await
        .expect("shutdown cut the session")
        .unwrap();
}
