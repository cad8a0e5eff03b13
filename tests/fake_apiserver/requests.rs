//! The request counter: every request is counted once, by its Kubernetes verb and resource,
//! so that the operator's tests can assert how much API traffic a change costs.

use super::*;
use support::apiserver::Request;

fn count(server: &FakeApiServer, verb: &'static str, resource: &str) -> u64 {
    let request = Request {
        verb,
        resource: resource.to_owned(),
    };
    server.requests().get(&request).copied().unwrap_or(0)
}

#[tokio::test]
async fn each_request_is_counted_once_by_verb_and_resource() {
    let server = FakeApiServer::start().await;
    let maps = Api::<ConfigMap>::namespaced(server.client(), "default");
    let sets = Api::<StatefulSet>::namespaced(server.client(), "default");
    create(&maps, &config_map("a", &[], &[])).await;
    create(&sets, &stateful_set("s", 1)).await;
    maps.get("a").await.unwrap();
    maps.get_opt("missing").await.unwrap();
    maps.list(&ListParams::default()).await.unwrap();
    merge(&maps, "a", json!({"data": {"k": "v"}})).await;
    let status = Patch::Merge(json!({"status": {"replicas": 1}}));
    sets.patch_status("s", &PatchParams::default(), &status)
        .await
        .unwrap();
    maps.delete("a", &DeleteParams::default()).await.unwrap();
    let _watch = maps
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .unwrap();
    let expected = [
        ("create", "v1/configmaps", 1),
        ("get", "v1/configmaps", 2),
        ("list", "v1/configmaps", 1),
        ("watch", "v1/configmaps", 1),
        ("patch", "v1/configmaps", 1),
        ("delete", "v1/configmaps", 1),
        ("create", "apps/v1/statefulsets", 1),
        ("patch", "apps/v1/statefulsets/status", 1),
        ("patch", "apps/v1/statefulsets", 0),
    ];
    for (verb, resource, n) in expected {
        assert_eq!(
            count(&server, verb, resource),
            n,
            "{verb} {resource} in {:?}",
            server.requests()
        );
    }
}
