//! When credentials stop working: expired or foreign ones at connect, expiring ones while
//! connected, and users issued before an account's cut-off.

use super::*;

#[tokio::test]
async fn expired_and_foreign_credentials_are_refused_at_connect() {
    let nats = AuthNats::start();
    let permissions = mailbox_permissions("box", &none(), &none(), &none()).unwrap();
    let expired = nats.mint(&permissions, Some(now_secs() - 10));
    nats.refused(&expired, "expired credentials are refused")
        .await;

    // Signed by another Broker's account: not in this server's chain of trust.
    let foreign = mint_user(SigningKeys::generate().account(), &user(&permissions, None));
    nats.refused(&foreign, "foreign credentials are refused")
        .await;

    // The same permissions from this Broker's keys, unexpired, connect.
    let valid = nats.mint(&permissions, Some(now_secs() + 3600));
    nats.connect(&valid)
        .await
        .expect("valid credentials connect");
}

#[tokio::test]
async fn credentials_expiring_while_connected_are_cut_off_and_then_refused() {
    let nats = AuthNats::start();
    let permissions = mailbox_permissions("box", &none(), &none(), &none()).unwrap();
    let expires_at = now_secs() + 3;
    let credentials = nats.mint(&permissions, Some(expires_at));
    let mut agent = nats.connect(&credentials).await.expect("not yet expired");
    agent
        .wait_event("the expiry notice", |event| {
            matches!(event, Event::ServerError(ServerError::Other(text))
                if text.to_lowercase().contains("expired"))
        })
        .await;
    assert!(
        now_secs() >= expires_at,
        "cut off at the expiry, not before"
    );
    // The client reconnects on its own. nats-server treats `exp` as the last valid second,
    // so reconnects within that second are accepted and cut off at once; from the next
    // second on they are refused, which async-nats reports as a client error.
    agent
        .wait_event("the refused reconnect", |event| {
            matches!(event, Event::ClientError(ClientError::Other(text))
                if text.contains("authorization violation"))
        })
        .await;
    assert!(now_secs() > expires_at);
    nats.refused(&credentials, "refused after expiry").await;
}

#[tokio::test]
async fn a_cut_off_in_the_broker_account_refuses_its_earlier_users_only() {
    let keys = SigningKeys::generate();
    let permissions = mailbox_permissions("box", &none(), &none(), &none()).unwrap();
    let earlier = mint_user(keys.account(), &user(&permissions, None));
    let cut_off = now_secs();
    let nats = AuthNats::start_with(keys, Some(cut_off));
    nats.refused(&earlier, "a user issued at the cut-off is refused")
        .await;
    // Users issued after the cut-off second are not affected.
    wait_past_second(cut_off).await;
    let later = nats.mint(&permissions, None);
    nats.connect(&later).await.expect("a later user connects");
}
