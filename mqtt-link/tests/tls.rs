//! TLS against a real Mosquitto: a client with the right CA connects, publishes and receives its own
//! message; a client trusting another CA is refused during the handshake.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::time::Duration;
use telemetry::mqtt::{MqttEndpoint, MqttTls};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        // A second, unrelated CA.
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = CertifiedIssuer::self_signed(other, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn endpoint(port: u16, id: &str, ca: String) -> MqttEndpoint {
    MqttEndpoint {
        port,
        client_id: id.into(),
        tls: Some(MqttTls {
            ca_file: ca,
            client_cert_file: None,
            client_key_file: None,
        }),
        ..MqttEndpoint::default()
    }
}

#[tokio::test]
async fn tls_connects_with_the_right_ca_and_is_refused_with_another() {
    let pki = Pki::new();
    let extra = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous true\n",
        pki.path("ca.pem"),
        pki.path("server.pem"),
        pki.path("server.key")
    );
    let Some(broker) = testkit::Mosquitto::start_with("mqtt_link::tls", &extra) else {
        return;
    };

    let opts = mqtt_link::options(&endpoint(broker.port, "tls-ok", pki.path("ca.pem"))).unwrap();
    let (client, mut el) = AsyncClient::new(opts, 10);
    el.set_network_options(mqtt_link::network_options());
    client.subscribe("t/tls", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("t/tls", QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => return p.payload.to_vec(),
                Ok(_) => {}
                Err(e) => panic!("TLS connection with the right CA failed: {e}"),
            }
        }
    })
    .await
    .expect("message over TLS within 10 s");
    assert_eq!(got, b"over tls");

    let opts =
        mqtt_link::options(&endpoint(broker.port, "tls-bad", pki.path("other-ca.pem"))).unwrap();
    let (_c, mut el) = AsyncClient::new(opts, 10);
    let first = tokio::time::timeout(Duration::from_secs(10), el.poll())
        .await
        .expect("answer within 10 s");
    let err = first.expect_err("a client trusting another CA must not connect");
    assert!(matches!(err, rumqttc::ConnectionError::Tls(_)), "{err:?}");
}

#[test]
fn bad_tls_files_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let missing = endpoint(1, "x", dir.path().join("nope.pem").display().to_string());
    let e = mqtt_link::options(&missing).unwrap_err().to_string();
    assert!(e.starts_with("mqtt.tls.ca_file: reading"), "{e}");
    std::fs::write(dir.path().join("empty.pem"), "not a certificate").unwrap();
    let empty = endpoint(1, "x", dir.path().join("empty.pem").display().to_string());
    let e = mqtt_link::options(&empty).unwrap_err().to_string();
    assert_eq!(e, "mqtt.tls.ca_file: no PEM certificate found");
}
