use super::*;

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

/// A pod with the opt-in label and `annotations`.
fn annotated(annotations: Value) -> Pod {
    pod(
        json!({"metadata": {"name": "web-1", "labels": {INJECT_LABEL: "true"}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "agent"}]}}),
    )
}

/// The pod after the patch, as the API server would store it.
fn patched(pod: &Pod, auto: bool) -> Value {
    let mut value = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut value, &patch(pod, "inbox", "inbox-mq9", auto)).unwrap();
    value
}

#[test]
fn only_annotated_pods_outside_system_namespaces() {
    let plain = pod(json!({"metadata": {"name": "p"}}));
    assert_eq!(
        request(&plain, "apps", "mq9-system"),
        Ok(Request::Skip("not opted in"))
    );
    let named = annotated(json!({MAILBOX_ANNOTATION: "inbox"}));
    assert_eq!(
        request(&named, "apps", "mq9-system"),
        Ok(Request::Existing("inbox".into()))
    );
    for namespace in ["kube-system", "mq9-system"] {
        assert_eq!(
            request(&named, namespace, "mq9-system"),
            Ok(Request::Skip("system namespace"))
        );
    }
}

#[test]
fn the_label_and_the_annotation_are_both_needed() {
    let annotation_only =
        pod(json!({"metadata": {"name": "p", "annotations": {MAILBOX_ANNOTATION: "inbox"}}}));
    let warning = request(&annotation_only, "apps", "mq9-system").unwrap_err();
    assert!(warning.contains(INJECT_LABEL), "{warning}");
    let label_only = annotated(json!({}));
    let warning = request(&label_only, "apps", "mq9-system").unwrap_err();
    assert!(warning.contains(MAILBOX_ANNOTATION), "{warning}");
    let wrong_value = pod(
        json!({"metadata": {"name": "p", "labels": {INJECT_LABEL: "yes"},
        "annotations": {MAILBOX_ANNOTATION: "inbox"}}}),
    );
    assert!(request(&wrong_value, "apps", "mq9-system").is_err());
}

#[test]
fn an_injected_pod_is_never_injected_twice() {
    let once = annotated(json!({MAILBOX_ANNOTATION: "inbox"}));
    let twice = pod(patched(&once, false));
    assert_eq!(
        request(&twice, "apps", "mq9-system"),
        Ok(Request::Skip("already injected"))
    );
}

#[test]
fn auto_takes_broker_and_ttl_and_refuses_bad_values() {
    let auto = annotated(
        json!({MAILBOX_ANNOTATION: "auto", BROKER_ANNOTATION: "agents", TTL_ANNOTATION: "2h"}),
    );
    let expected = Request::Auto {
        broker: Some("agents".into()),
        ttl: "2h".into(),
    };
    assert_eq!(request(&auto, "apps", "mq9-system"), Ok(expected));
    let defaults = annotated(json!({MAILBOX_ANNOTATION: "auto"}));
    let expected = Request::Auto {
        broker: None,
        ttl: DEFAULT_AUTO_TTL.into(),
    };
    assert_eq!(request(&defaults, "apps", "mq9-system"), Ok(expected));
    let bad_ttl = annotated(json!({MAILBOX_ANNOTATION: "auto", TTL_ANNOTATION: "soon"}));
    assert!(request(&bad_ttl, "apps", "mq9-system")
        .unwrap_err()
        .contains(TTL_ANNOTATION));
    let bad_name = annotated(json!({MAILBOX_ANNOTATION: "My_Box"}));
    assert!(request(&bad_name, "apps", "mq9-system")
        .unwrap_err()
        .contains("My_Box"));
}

#[test]
fn patch_wires_the_secret_into_every_container() {
    let pod = pod(
        json!({"metadata": {"name": "web-1", "annotations": {MAILBOX_ANNOTATION: "inbox"}},
        "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]},
                {"name": "side", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}
            ],
            "volumes": [{"name": "own", "emptyDir": {}}]
        }}),
    );
    let after = patched(&pod, false);
    assert_eq!(
        after["metadata"]["annotations"][INJECTED_ANNOTATION],
        "inbox"
    );
    assert_eq!(
        after["metadata"]["annotations"][MAILBOX_ANNOTATION], "inbox",
        "existing annotations stay"
    );
    assert_eq!(
        after["spec"]["volumes"][1],
        json!({"name": "mq9", "secret": {"secretName": "inbox-mq9"}})
    );
    let app = &after["spec"]["containers"][0];
    assert_eq!(
        app["envFrom"][0]["configMapRef"]["name"], "cfg",
        "existing envFrom stays"
    );
    assert_eq!(
        app["envFrom"].as_array().unwrap().len(),
        1,
        "no envFrom of the Secret"
    );
    assert_eq!(
        secret_env(app),
        [
            ("MQ9_URL", "inbox-mq9"),
            ("MQ9_MAIL_ADDRESS", "inbox-mq9"),
            ("MQ9_CREDS", "inbox-mq9")
        ]
    );
    assert_eq!(
        app["volumeMounts"][0],
        json!({"name": "mq9", "mountPath": MOUNT_PATH, "readOnly": true})
    );
    let side = &after["spec"]["containers"][1];
    assert_eq!(
        side["volumeMounts"].as_array().unwrap().len(),
        1,
        "its own mount on that path is kept"
    );
    assert_eq!(secret_env(side).len(), 3);
    assert_eq!(secret_env(&after["spec"]["initContainers"][0]).len(), 3);
    assert!(
        after["metadata"]["labels"].is_null(),
        "only auto pods are labelled"
    );
}

#[test]
fn auto_pods_are_labelled_and_get_their_own_mailbox() {
    let pod = pod(
        json!({"metadata": {"generateName": "web-7d9f-", "annotations": {MAILBOX_ANNOTATION: "auto"}},
        "spec": {"containers": [{"name": "app"}]}}),
    );
    let after = patched(&pod, true);
    assert_eq!(after["metadata"]["labels"][POD_MAILBOX_LABEL], "true");
    let mailbox = auto_mailbox(&pod, "apps", "x1y2z3", "agents", "2h");
    assert_eq!(mailbox.name_any(), "web-7d9f-x1y2z3");
    assert_eq!(mailbox.namespace().as_deref(), Some("apps"));
    assert_eq!(mailbox.labels()[POD_MAILBOX_LABEL], "true");
    assert_eq!(mailbox.spec.broker_ref.name, "agents");
    assert_eq!(
        mailbox.spec.broker_ref.namespace, None,
        "the pod's own namespace's Broker, which always admits it"
    );
    assert_eq!(mailbox.spec.ttl.as_deref(), Some("2h"));
    assert_eq!(mailbox.spec.expiration_policy, ExpirationPolicy::Delete);
}

/// The container's environment variables taken from a Secret: (variable, Secret name). Never
/// `user.creds`: the seed stays a file.
fn secret_env(container: &Value) -> Vec<(&str, &str)> {
    let vars = container["env"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let from_secret: Vec<(&str, &str)> = vars
        .iter()
        .filter_map(|var| {
            let reference = &var["valueFrom"]["secretKeyRef"];
            assert_eq!(
                var["name"], reference["key"],
                "each variable is its own key"
            );
            Some((var["name"].as_str()?, reference["name"].as_str()?))
        })
        .collect();
    assert!(from_secret.iter().all(|(name, _)| name.starts_with("MQ9_")));
    from_secret
}
