//! The data plane's own defences, on real nats-servers running exactly the configuration the
//! operator generates for a Broker (ConfigMap text plus the nats container's environment, as
//! the kubelet would expand it): the whole file is accepted by `nats-server -t`, cluster routes
//! need the Broker's route password, and only servers holding it form a cluster.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use mq9::crd::{Broker, BrokerSpec};
use mq9::natsd::{NatsServer, NatsServerOptions};
use mq9::operator::broker::{layout, plan};
use mq9::operator::{builders, credentials, names, routes};
use tempfile::TempDir;

/// Broker `agents` in namespace `apps`, as read from the API server.
fn broker(spec: serde_json::Value) -> Broker {
    let spec: BrokerSpec = serde_json::from_value(spec).unwrap();
    let mut broker = Broker::new("agents", spec);
    broker.metadata.namespace = Some("apps".into());
    broker.metadata.uid = Some("uid-1".into());
    broker
}

/// The nats container's environment in pod `pod`, as the kubelet gives it: `POD_NAME` from the
/// pod, `ROUTE_PASSWORD` from the routes Secret, and `$(VAR)` references to earlier variables
/// expanded (Kubernetes' dependent environment variables).
fn nats_env(sts: &StatefulSet, pod: &str, route_password: &str) -> Vec<(String, String)> {
    let template = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let nats = template
        .containers
        .iter()
        .find(|c| c.name == "nats")
        .unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for var in nats.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => env.iter().fold(value.clone(), |value, (name, known)| {
                value.replace(&format!("$({name})"), known)
            }),
            (None, Some(from)) if from.field_ref.is_some() => pod.to_owned(),
            (None, Some(from)) => {
                let secret = from.secret_key_ref.as_ref().expect("a Secret reference");
                assert_eq!(secret.name, "agents-routes");
                route_password.to_owned()
            }
            (None, None) => panic!("{} has no value", var.name),
        };
        env.push((var.name.clone(), value));
    }
    env
}

/// The route password as the operator generates it, through the Secret it creates.
fn route_password(broker: &Broker) -> String {
    let secret = routes::routes_secret(broker, &routes::new_password());
    let bytes = &secret.data.unwrap()[builders::ROUTE_PASSWORD_KEY];
    String::from_utf8(bytes.0.clone()).unwrap()
}

/// What the operator applies for `broker` with JWT auth (fresh keys, as on a first pass) and,
/// with routes, `route_password`: built by the Broker controller's own plan.
fn generated(broker: &Broker, route_password: Option<&str>) -> plan::Plan {
    let keys = credentials::new_auth_secret(broker);
    let auth = credentials::BrokerAuth::from_secret(&keys).unwrap();
    let decision = layout::decide(broker, None);
    let auth_config = auth.server_config(decision.layout);
    plan::desired(&plan::Observed {
        broker,
        existing: None,
        decision: &decision,
        auth_config: Some(&auth_config),
        route_password,
        operator_namespace: "mq9-system",
        images: &builders::Images::default(),
    })
}

/// Writes every file of the ConfigMap into `dir`, as the pod mounts them at `/etc/nats`, with
/// the account resolver's and JetStream's directories (on the pod's volume) moved into `dir`
/// too; the path of the main file.
fn mount_config_map(config_map: &ConfigMap, dir: &Path) -> PathBuf {
    let resolver_dir = dir.join("nats-accounts");
    let jetstream_dir = dir.join("jetstream");
    for (file, text) in config_map.data.as_ref().unwrap() {
        let text = text
            .replace(names::RESOLVER_DIR, &resolver_dir.display().to_string())
            .replace(names::JETSTREAM_DIR, &jetstream_dir.display().to_string());
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir.join(builders::CONFIG_KEY)
}

/// `nats-server -t -c <conf>` with `env`: Ok, or the server's complaint.
fn check_config(conf: &Path, env: &[(String, String)]) -> Result<(), String> {
    let output = Command::new(mq9::natsd::find_binary(None).unwrap())
        .arg("-t")
        .arg("-c")
        .arg(conf)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap();
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

#[test]
fn the_whole_generated_configuration_is_accepted_by_nats_server() {
    for replicas in [1, 3] {
        let broker = broker(serde_json::json!({"replicas": replicas}));
        let password = route_password(&broker);
        let plan = generated(&broker, (replicas > 1).then_some(password.as_str()));
        let dir = TempDir::new().unwrap();
        let conf = mount_config_map(&plan.config_map, dir.path());
        let env = nats_env(&plan.statefulset, "agents-0", &password);
        let text = std::fs::read_to_string(&conf).unwrap();
        check_config(&conf, &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(text.contains("resolver"), "the JWT auth block is in it");
        for text in plan.config_map.data.as_ref().unwrap().values() {
            assert!(!text.contains(&password), "the ConfigMap holds no password");
        }
        if replicas > 1 {
            // The password really comes from the environment: without it the file is refused.
            let without: Vec<_> = env
                .iter()
                .filter(|(name, _)| name != "ROUTE_PASSWORD")
                .cloned()
                .collect();
            let refused = check_config(&conf, &without).unwrap_err();
            assert!(refused.contains("ROUTE_PASSWORD"), "{refused}");
        }
    }
}

/// One pod's nats-server on loopback: the generated configuration with only its addresses
/// moved (client and monitoring ports picked by the harness, the cluster port given, the pid
/// file in a temp dir) and `ROUTES` pointing at `cluster_ports` instead of the pods' DNS names.
struct Pod {
    server: NatsServer,
    _dir: TempDir,
}

impl Pod {
    fn start(broker: &Broker, index: usize, cluster_ports: &[u16], password: &str) -> Pod {
        let dir = TempDir::new().unwrap();
        let layout = builders::Layout::for_new(broker);
        let conf = builders::nats_server_config(broker, layout, None);
        let pid_file = dir.path().join("nats.pid");
        let monitor = support::free_port().port();
        let mut moved = Vec::new();
        for line in conf.lines() {
            moved.push(match line {
                "listen: 0.0.0.0:4222" => continue, // the harness listens on a free port
                "http: 127.0.0.1:8222" => format!("http: 127.0.0.1:{monitor}"),
                "  listen: 0.0.0.0:6222" => {
                    format!("  listen: 127.0.0.1:{}", cluster_ports[index])
                }
                l if l.starts_with("pid_file:") => format!("pid_file: {pid_file:?}"),
                l if l.starts_with("  store_dir:") => {
                    format!("  store_dir: {:?}", dir.path().join("jetstream"))
                }
                l => l.to_owned(),
            });
        }
        let moved = moved.join("\n");
        assert!(moved.contains("password: $ROUTE_PASSWORD"), "{moved}");
        let images = builders::Images::default();
        let sts = builders::statefulset(broker, layout, &images, "sum", None);
        let mut env = nats_env(&sts, &format!("agents-{index}"), password);
        for (name, value) in &mut env {
            if name == "ROUTES" {
                for (i, port) in cluster_ports.iter().enumerate() {
                    let host = format!("agents-{i}.agents-nats.apps.svc:6222");
                    assert!(value.contains(&host), "{value}");
                    *value = value.replace(&host, &format!("127.0.0.1:{port}"));
                }
            }
        }
        let mut options = NatsServerOptions::new(dir.path());
        options.extra_config = moved;
        options.env = env;
        let server = NatsServer::start(&options).expect("nats-server runs the generated config");
        Pod { server, _dir: dir }
    }
}

/// Opens a raw route connection to `port` and sends `connect`; what the server answers until
/// it closes the connection (or the deadline).
fn route_attempt(port: u16, connect: &serde_json::Value) -> (String, bool) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "the cluster port speaks: {info}");
    let mut writer = stream;
    write!(writer, "CONNECT {connect}\r\nPING\r\n").unwrap();
    writer.flush().unwrap();
    let deadline = Instant::now() + support::DEADLINE;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match reader.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&answer).into_owned(), true),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&answer).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), false)
}

#[test]
fn a_route_without_the_password_is_refused() {
    let broker = broker(serde_json::json!({"replicas": 3}));
    let password = route_password(&broker);
    let ports = [(); 3].map(|()| support::free_port().port());
    let _pod = Pod::start(&broker, 0, &ports, &password);
    // An attacker who reaches 6222 and speaks the route protocol, without or with a wrong
    // password, as the route user or another.
    let attempts = [
        serde_json::json!({"verbose": false, "pedantic": false, "tls_required": false,
            "name": "intruder", "cluster": "agents"}),
        serde_json::json!({"verbose": false, "pedantic": false, "tls_required": false,
            "name": "intruder", "cluster": "agents", "user": "route", "pass": "guess"}),
        serde_json::json!({"verbose": false, "pedantic": false, "tls_required": false,
            "name": "intruder", "cluster": "agents", "user": "admin", "pass": password}),
    ];
    for connect in attempts {
        let (answer, closed) = route_attempt(ports[0], &connect);
        assert!(
            answer.contains("-ERR 'Authorization Violation'"),
            "refused ({connect}): {answer:?}"
        );
        assert!(closed, "the connection is closed ({connect}): {answer:?}");
        assert!(!answer.contains("PONG"), "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_holding_the_password_form_a_cluster() {
    let broker = broker(serde_json::json!({"replicas": 3}));
    let password = route_password(&broker);
    let ports = [(); 3].map(|()| support::free_port().port());
    let first = Pod::start(&broker, 0, &ports, &password);
    let second = Pod::start(&broker, 1, &ports, &password);
    let publisher = async_nats::connect(first.server.url()).await.unwrap();
    let subscriber = async_nats::connect(second.server.url()).await.unwrap();
    let mut inbox = subscriber.subscribe("routed.hello").await.unwrap();
    subscriber.flush().await.unwrap();
    // The subscription reaches the first server once the route is up: publish until one
    // message crosses, within the deadline.
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        publisher
            .publish("routed.hello", "across the route".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let received = tokio::time::timeout(Duration::from_millis(100), inbox.next()).await;
        if let Ok(Some(message)) = received {
            assert_eq!(&message.payload[..], b"across the route");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no message crossed the route between the two servers"
        );
    }
}

/// A replicated Broker's generated configuration forms a JetStream cluster across its three
/// pods: a stream of three replicas (as each shard's log is) is made and takes a write once
/// the servers have elected their meta leader.
#[tokio::test(flavor = "multi_thread")]
async fn the_replicated_servers_form_a_jetstream_cluster_of_three() {
    let broker = broker(serde_json::json!({"replicas": 3}));
    assert!(builders::Layout::for_new(&broker).is_replicated());
    let password = route_password(&broker);
    let ports = [(); 3].map(|()| support::free_port().port());
    let pods = [0, 1, 2].map(|i| Pod::start(&broker, i, &ports, &password));
    let client = async_nats::connect(pods[0].server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let config = async_nats::jetstream::stream::Config {
        name: "R3".into(),
        subjects: vec!["r3.>".into()],
        num_replicas: 3,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    };
    // JetStream answers "no meta leader" (or nothing) until the three servers elected one.
    let deadline = Instant::now() + support::DEADLINE;
    let stream = loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no R3 stream within {:?}: {e}", support::DEADLINE),
        }
    };
    assert_eq!(stream.cached_info().config.num_replicas, 3);
    let ack = js.publish("r3.one", "on a quorum".into()).await.unwrap();
    assert_eq!(ack.await.unwrap().sequence, 1);
}
