//! The Broker's two Services.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{broker_labels, client_service_name, headless_service_name, metadata};
use super::{CLIENT_PORT, CLUSTER_PORT};
use crate::crd::Broker;

/// `<b>-nats`: headless, so each pod gets a DNS name (`<b>-<i>.<b>-nats.<ns>.svc`) for the
/// cluster routes. `publishNotReadyAddresses`: a pod must find its peers before it is ready,
/// since readiness needs the cluster formed. No monitoring port: nats-server's 8222 lists every
/// agent's subscriptions and is bound to the pod's loopback.
pub fn headless_service(broker: &Broker) -> Service {
    Service {
        metadata: metadata(broker, headless_service_name(broker)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(broker_labels(&broker.name_any())),
            ports: Some(vec![
                port("client", CLIENT_PORT),
                port("cluster", CLUSTER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<b>`: the address agents and the operator connect to, `nats://<b>.<ns>.svc:4222`; only
/// ready pods receive connections.
pub fn client_service(broker: &Broker) -> Service {
    Service {
        metadata: metadata(broker, client_service_name(broker)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(broker_labels(&broker.name_any())),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn port(name: &str, number: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(number),
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::builders::tests::{assert_applyable, broker};

    #[test]
    fn headless_service_publishes_every_pod() {
        let service = headless_service(&broker(serde_json::json!({"replicas": 3})));
        assert_applyable(&service, "Service", "b1-nats");
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.unwrap(), broker_labels("b1"));
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [4222, 6222], "no monitoring port");
    }

    #[test]
    fn client_service_serves_nats_clients() {
        let service = client_service(&broker(serde_json::json!({})));
        assert_applyable(&service, "Service", "b1");
        let spec = service.spec.unwrap();
        let ports = spec.ports.unwrap();
        assert_eq!((ports.len(), ports[0].port), (1, 4222));
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("client".into()))
        );
        assert_eq!(spec.selector.unwrap(), broker_labels("b1"));
    }
}
