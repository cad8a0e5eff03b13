use super::*;

fn grant<'a>(subscribe: &'a BTreeSet<String>, expires_at: Option<Timestamp>) -> Grant<'a> {
    Grant {
        user: "ns/inbox",
        address: "a.b",
        send_to: &[],
        subscribe,
        publish: &[],
        expires_at,
        signer: None,
    }
}

#[test]
fn auth_secret_round_trips_and_holds_no_address() {
    let broker = builders::tests::broker(serde_json::json!({}));
    let secret = new_auth_secret(&broker);
    assert_eq!(secret.metadata.name.as_deref(), Some("b1-auth"));
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-1"
    );
    let data = secret.data.as_ref().unwrap();
    assert!(String::from_utf8_lossy(&data[BROKER_CREDS_KEY].0).contains("BEGIN NATS USER JWT"));
    let auth = BrokerAuth::from_secret(&secret).unwrap();
    assert!(auth.server_config(Layout::Single).contains("type: full"));
    assert!(auth.operator_credentials().contains("BEGIN USER NKEY SEED"));
    let topics = BTreeSet::new();
    let creds = auth
        .mailbox_credentials("ns", &grant(&topics, None))
        .unwrap();
    assert!(creds.creds_file_text.contains("BEGIN NATS USER JWT"));
    assert!(
        !broker_creds_outdated(&secret, &auth::broker_permissions()),
        "a new Secret holds the narrowed broker"
    );
    assert_eq!(auth.broker_users_revoked_at, None);
}

#[test]
fn mailbox_users_belong_to_their_namespace_and_name_their_address() {
    let broker = builders::tests::broker(serde_json::json!({}));
    let auth = BrokerAuth::from_secret(&new_auth_secret(&broker)).unwrap();
    let topics = BTreeSet::new();
    let minted = auth
        .mailbox_credentials("ns", &grant(&topics, None))
        .unwrap();
    let claims = jwt_claims(&minted.jwt);
    assert_eq!(claims["iss"], auth.keys.tenant_account("ns").public_key());
    assert_eq!(claims["sub"], minted.public_key);
    assert_eq!(claims["name"], "ns/inbox");
    assert_eq!(
        claims["nats"]["tags"],
        serde_json::json!(["mq9-address:a.b"])
    );
    let other = auth
        .mailbox_credentials("other", &grant(&topics, None))
        .unwrap();
    assert_ne!(jwt_claims(&other.jwt)["iss"], claims["iss"]);
    let push = auth.account_push_credentials();
    let push_claims = jwt_claims(auth::creds_jwt(&push).unwrap());
    assert_eq!(push_claims["iss"], auth.keys.system_account_public_key());
}

#[test]
fn the_broker_user_follows_the_layout() {
    let broker = builders::tests::broker(serde_json::json!({"replicas": 3}));
    let secret = new_auth_secret(&broker);
    let replicated = broker_user_permissions(&broker, Layout::Replicated { shards: 16 });
    assert!(
        !broker_creds_outdated(&secret, &replicated),
        "a new Broker of 3 replicas gets a replicated broker user at once"
    );
    assert!(replicated
        .publish_allow
        .contains(&"$mq9.REPL.b1.>".to_owned()));
    let active_pod = broker_user_permissions(&broker, Layout::ActivePod);
    assert_eq!(active_pod, auth::broker_permissions());
    assert!(
        broker_creds_outdated(&secret, &active_pod),
        "found running in active-pod mode, the broker's user is narrowed again"
    );
}

#[test]
fn the_users_of_the_single_account_design_are_replaced_and_revoked() {
    let broker = builders::tests::broker(serde_json::json!({}));
    let mut secret = new_auth_secret(&broker);
    let auth = BrokerAuth::from_secret(&secret).unwrap();
    let everything = Permissions {
        publish_allow: vec![">".into()],
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    };
    let old = broker_account_user(&auth.keys, "b1/broker", &everything);
    let data = secret.data.as_mut().unwrap();
    data.insert(BROKER_CREDS_KEY.into(), ByteString(old.into_bytes()));
    let old_operator = auth.operator_credentials().to_owned();
    let narrow = auth::broker_permissions();
    assert!(broker_creds_outdated(&secret, &narrow));
    let now = Timestamp::now().as_second() as u64;
    reissue_broker_account_users(&mut secret, &auth.keys, ("b1", &narrow), now);
    assert!(!broker_creds_outdated(&secret, &narrow), "re-minted once");
    let reissued = BrokerAuth::from_secret(&secret).unwrap();
    assert_eq!(reissued.broker_users_revoked_at, Some(now - 1));
    assert_ne!(reissued.operator_credentials(), old_operator);
    for creds in [
        secret_text(&secret, BROKER_CREDS_KEY),
        reissued.operator_credentials().to_owned(),
    ] {
        let claims = jwt_claims(auth::creds_jwt(&creds).unwrap());
        assert_eq!(claims["iss"], auth.keys.account_public_key());
        assert!(
            claims["iat"].as_u64().unwrap() > now - 1,
            "the new users outlive the revocation"
        );
    }
    let broker_creds = secret_text(&secret, BROKER_CREDS_KEY);
    let jwt = auth::creds_jwt(&broker_creds).unwrap();
    assert!(auth::carries_permissions(jwt, &auth::broker_permissions()));
}

fn secret_text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

fn jwt_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn a_secret_without_keys_is_a_clear_error() {
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("b1-auth".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let error = BrokerAuth::from_secret(&secret).err().unwrap().to_string();
    assert!(
        error.contains("b1-auth") && error.contains(SIGNING_KEYS_KEY),
        "{error}"
    );
}

/// A Broker deleted and re-created gets new keys: the same grant signed by its new tenant
/// account hashes apart, so every Mailbox's Secret is re-minted.
#[test]
fn grant_hash_follows_the_signer_of_a_recreated_broker() {
    let broker = builders::tests::broker(serde_json::json!({}));
    let signer = |auth: &BrokerAuth| auth.tenant_account_public_key("ns");
    let before = signer(&BrokerAuth::from_secret(&new_auth_secret(&broker)).unwrap());
    let after = signer(&BrokerAuth::from_secret(&new_auth_secret(&broker)).unwrap());
    assert_ne!(before, after, "new keys, a new signer");
    let topics = BTreeSet::new();
    let signed_by = |signer: Option<&str>| {
        grant_hash(&Grant {
            signer,
            ..grant(&topics, None)
        })
    };
    let hash = signed_by(Some(&before));
    assert_eq!(hash, signed_by(Some(&before)));
    assert_ne!(hash, signed_by(Some(&after)));
    assert_ne!(hash, signed_by(None));
}

#[test]
fn grant_hash_follows_permissions_and_expiry() {
    let none = BTreeSet::new();
    let one: BTreeSet<String> = ["task.*".to_owned()].into();
    let base = grant_hash(&grant(&none, None));
    assert_eq!(base, grant_hash(&grant(&none, None)));
    assert_ne!(base, grant_hash(&grant(&one, None)));
    assert_ne!(base, grant_hash(&grant(&none, Some(Timestamp::UNIX_EPOCH))));
    assert!(!base.contains("a.b"));
}
