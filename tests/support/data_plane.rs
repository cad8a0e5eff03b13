//! A Broker's data plane as its pod would run it once the operator has written the Broker's
//! ConfigMap and auth Secret: a real nats-server configured with the operator's trust block
//! (the account resolver's directory moved from the pod's volume to a temp dir) and the real
//! `mq9 broker` connecting with `broker.creds`.

use mq9::natsd::{NatsServer, NatsServerOptions};
use mq9::operator::names::RESOLVER_DIR;
use tempfile::TempDir;

use super::apiserver::FakeApiServer;
use super::cluster::{secret_text, Operator, CONFIG_MAPS, SECRETS};

pub struct DataPlane {
    pub nats: NatsServer,
    pub broker: super::Broker,
    /// The `.creds` text of the operator's own user (`operator.creds` of `<broker>-auth`).
    pub operator_creds: String,
    _dirs: [TempDir; 3],
}

impl DataPlane {
    /// Waits for the Broker's ConfigMap and auth Secret, then starts nats-server on `port` and
    /// the broker, and waits until the broker is ready (what its pod's readiness probe checks).
    pub async fn start(
        api: &FakeApiServer,
        operator: &Operator,
        namespace: &str,
        broker: &str,
        port: u16,
    ) -> DataPlane {
        let what = operator.waiting_for("the Broker's config and keys");
        let (conf, auth) = api
            .wait_for(&what, |api| {
                Some((
                    api.get(CONFIG_MAPS, namespace, &format!("{broker}-config"))?,
                    api.get(SECRETS, namespace, &format!("{broker}-auth"))?,
                ))
            })
            .await;
        let conf = conf["data"]["nats-server.conf"].as_str().unwrap();
        let trust = &conf[conf.find("operator:").expect("an operator-mode block")..];
        let nats_dir = TempDir::new().unwrap();
        let resolver_dir = nats_dir.path().join("accounts").display().to_string();
        let in_pod = format!("dir: {RESOLVER_DIR:?}");
        assert!(
            trust.contains(&in_pod),
            "the resolver is on the volume: {trust}"
        );
        let trust = trust.replace(&in_pod, &format!("dir: {resolver_dir:?}"));
        let mut options = NatsServerOptions::new(nats_dir.path());
        options.port = Some(port);
        options.extra_config = trust;
        let nats = NatsServer::start(&options).expect("nats-server accepts the operator's config");
        let creds_dir = TempDir::new().unwrap();
        let broker_creds = creds_dir.path().join("broker.creds");
        std::fs::write(&broker_creds, secret_text(&auth, "broker.creds").unwrap()).unwrap();
        let data_dir = TempDir::new().unwrap();
        // As the StatefulSet runs it with JWT auth: callers known from nats-server.
        let args = [
            "--nats-creds".to_owned(),
            broker_creds.display().to_string(),
            "--trust-request-info".to_owned(),
        ];
        let broker = super::Broker::spawn(nats.url(), data_dir.path(), &args);
        broker.wait_ready().await;
        DataPlane {
            nats,
            broker,
            operator_creds: secret_text(&auth, "operator.creds").unwrap(),
            _dirs: [nats_dir, creds_dir, data_dir],
        }
    }
}
