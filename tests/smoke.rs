mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn three_priorities_come_back_in_priority_order_as_base64() {
    let env = Env::start().await;
    let address = env.create(json!({"ttl": 3600})).await;
    env.send_ok(&address, b"low", &[("mq9-priority", "notify")])
        .await;
    env.send_ok(&address, b"mid", &[]).await;
    env.send_ok(&address, b"high", &[("mq9-priority", "critical")])
        .await;
    let reply = env.fetch(&address, json!({})).await;
    let got: Vec<Vec<u8>> = messages(&reply).iter().map(payload).collect();
    assert_eq!(
        got,
        vec![b"high".to_vec(), b"mid".to_vec(), b"low".to_vec()]
    );
}
