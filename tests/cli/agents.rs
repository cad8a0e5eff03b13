//! The agent registry through the CLI: `agents register`, `discover`, `report`, `unregister`.

use super::*;

#[tokio::test]
async fn agents_register_discover_report_unregister() {
    let env = Env::start().await;
    let cli = Cli::of(&env);
    let card =
        json!({"name": "translator", "mailbox": "tr.box", "description": "French to English"});
    let registered = cli.ok(&["agents", "register", &card.to_string()]).await;
    assert_eq!(registered, "registered agent translator\n");
    let ocr = json!({"mailbox": "ocr.box", "skills": ["ocr"]});
    let piped = cli
        .run_with_stdin(&["agents", "register", "-"], ocr.to_string().as_bytes())
        .await;
    assert!(piped.status.success(), "{piped:?}");

    assert_eq!(cli.json(&["agents", "discover"]).await, json!([card, ocr]));
    assert_eq!(
        cli.json(&["agents", "discover", "--text", "french"]).await,
        json!([card])
    );
    let text = cli.ok(&["agents", "discover"]).await;
    assert!(
        text.contains("translator  tr.box") && text.contains("French to English"),
        "{text}"
    );

    let status = [
        "agents",
        "report",
        "--name",
        "translator",
        "--status",
        r#"{"load":1}"#,
    ];
    assert_eq!(cli.ok(&status).await, "reported agent translator\n");
    let unknown = cli.fails(&["agents", "report", "--name", "nobody"]).await;
    assert!(unknown.contains("not_found"), "{unknown}");

    cli.ok(&["agents", "unregister", "--mailbox", "ocr.box"])
        .await;
    assert_eq!(cli.json(&["agents", "discover"]).await, json!([card]));
}
