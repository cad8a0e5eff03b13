//! Credentials that must stop working: of narrowed and deleted mailboxes (within seconds), and
//! of the single-account design an upgraded broker replaces.

use super::*;

/// Revocation must reach nats-server within this (security.md §5: "within seconds").
const REVOKED_WITHIN: Duration = Duration::from_secs(5);

/// Waits until `refused` holds, failing after [`REVOKED_WITHIN`] since `since`.
async fn refused_within(what: &str, since: Instant, mut refused: impl AsyncFnMut() -> bool) {
    loop {
        if refused().await {
            return;
        }
        assert!(
            since.elapsed() < REVOKED_WITHIN,
            "{what} still works {REVOKED_WITHIN:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn narrowed_and_deleted_mailboxes_lose_their_old_credentials_within_seconds() {
    let t = Tenancy::start().await;
    let old_creds = t.mailbox(TEAM_B, "beta", "beta.box", json!([])).await;
    let open = t.agent(&old_creds).await;
    let anywhere = call(&open, "$mq9.AI.MSG.SEND.other.box", "x").await;
    assert_eq!(
        anywhere.unwrap()["code"],
        "not_found",
        "sendTo [] reaches any address"
    );

    // Narrow sendTo: the credentials are re-minted, the old ones revoked.
    let mailboxes: kube::Api<mq9::crd::Mailbox> = kube::Api::namespaced(t.api.client(), TEAM_B);
    let narrowed = json!({"spec": {"sendTo": ["beta.*"]}});
    let changed = Instant::now();
    mailboxes
        .patch("beta", &PatchParams::default(), &Patch::Merge(&narrowed))
        .await
        .unwrap();
    let what = t.operator.waiting_for("re-minted credentials");
    let new_creds = t
        .api
        .wait_for(&what, |_| {
            t.creds(TEAM_B, "beta").filter(|creds| *creds != old_creds)
        })
        .await;
    refused_within(
        "a new connection with the old credentials",
        changed,
        async || t.connect(&old_creds).await.is_err(),
    )
    .await;
    refused_within(
        "the open connection of the old credentials",
        changed,
        async || {
            call(&open, "$mq9.AI.MSG.QUERY.beta.box", "{}")
                .await
                .is_err()
        },
    )
    .await;
    let agent = t.agent(&new_creds).await;
    ok(&agent, "$mq9.AI.MSG.SEND.beta.box", "to myself").await;
    ok(&agent, "$mq9.AI.MSG.QUERY.beta.box", "{}").await;
    assert!(
        call(&agent, "$mq9.AI.MSG.SEND.other.box", "x")
            .await
            .is_err(),
        "the new credentials carry the narrowed sendTo: nats-server drops the publish"
    );

    // Delete the Mailbox: its credentials die with it, Secret or not.
    let deleted = Instant::now();
    t.api.delete(MAILBOXES, TEAM_B, "beta");
    refused_within("the deleted Mailbox's credentials", deleted, async || {
        t.connect(&new_creds).await.is_err()
    })
    .await;
    refused_within(
        "the deleted Mailbox's open connection",
        deleted,
        async || {
            call(&agent, "$mq9.AI.MSG.QUERY.beta.box", "{}")
                .await
                .is_err()
        },
    )
    .await;
    let tenants = t
        .api
        .get(CONFIG_MAPS, TEAM_A, "agents-tenants")
        .expect("the revocations are recorded");
    let record: Value = serde_json::from_str(tenants["data"][TEAM_B].as_str().unwrap()).unwrap();
    assert_eq!(record["revoked"].as_object().unwrap().len(), 2, "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mailboxes_deleted_together_are_all_revoked() {
    let t = Tenancy::start().await;
    let names = ["one", "two", "three", "four"];
    let mut creds = Vec::new();
    for name in names {
        let address = format!("{name}.box");
        creds.push(t.mailbox(TEAM_B, name, &address, json!([])).await);
    }
    // Four finalizers record a revocation in the same ConfigMap entry at the same time: each
    // write carries the resourceVersion it read, so none overwrites another.
    let deleted = Instant::now();
    for name in names {
        t.api.delete(MAILBOXES, TEAM_B, name);
    }
    for (name, creds) in names.iter().zip(&creds) {
        refused_within(&format!("the credentials of {name}"), deleted, async || {
            t.connect(creds).await.is_err()
        })
        .await;
    }
    let tenants = t.api.get(CONFIG_MAPS, TEAM_A, "agents-tenants").unwrap();
    let record: Value = serde_json::from_str(tenants["data"][TEAM_B].as_str().unwrap()).unwrap();
    assert_eq!(record["revoked"].as_object().unwrap().len(), 4, "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_broker_ends_the_users_of_the_single_account_design() {
    use mq9::auth::{mailbox_permissions, mint_user, operator_permissions, Permissions};
    use mq9::auth::{SigningKeys, UserClaims};
    let api = FakeApiServer::start().await;
    // The auth Secret as the single-account operator left it: a broker allowed everything, and
    // agents were users of the broker account like the broker and the operator.
    let keys = SigningKeys::generate();
    let everything = Permissions {
        publish_allow: vec![">".into()],
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    };
    let mint = |permissions: &Permissions| {
        let user = UserClaims {
            name: "before-tenancy",
            permissions,
            tags: &[],
            expires_at: None,
        };
        mint_user(keys.account(), &user).creds_file_text
    };
    let none: &[String] = &[];
    let old_agent = mint(&mailbox_permissions("old.box", none, none, none).unwrap());
    let old_broker = mint(&everything);
    let old_operator = mint(&operator_permissions());
    // Read after minting: every `iat` above is at or before it, even when a second boundary
    // fell between the mints.
    let minted_at = support::now_secs();
    let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "agents-auth", "namespace": TEAM_A},
        "data": {"signing-keys.json": base64(&serde_json::to_string(&keys).unwrap()),
                 "broker.creds": base64(&old_broker), "operator.creds": base64(&old_operator)}});
    api.create(SECRETS, secret);
    // The cut-off is the second before the upgrade: let the second of the minting pass.
    support::wait_past_second(minted_at).await;

    let t = Tenancy::run(api, json!({})).await;
    // (Compared, never printed: credentials hold a seed.)
    assert!(t.data_plane.operator_creds != old_operator, "re-issued");
    for (who, creds) in [
        ("agent", &old_agent),
        ("broker", &old_broker),
        ("operator", &old_operator),
    ] {
        assert!(
            t.connect(creds).await.is_err(),
            "the {who} credentials of before are refused"
        );
    }
    let admin = t.agent(&t.data_plane.operator_creds).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(&admin, "$mq9.ADMIN.MAILBOX.LIST", "{}").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the re-issued broker never answered"
        );
    }
    let creds = t.mailbox(TEAM_A, "alpha", "alpha.box", json!([])).await;
    ok(&t.agent(&creds).await, "$mq9.AI.MSG.QUERY.alpha.box", "{}").await;
}
