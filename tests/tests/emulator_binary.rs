//! The `fusionauth-emulator` binary starts with one command and answers like
//! FusionAuth (the README's instructions).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_binary_serves_the_api_and_raises_events() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fusionauth-emulator"))
        .args(["--listen", "127.0.0.1:0", "--api-key", "the-key"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let ok = http.get(format!("{url}/api/webhook")).header("authorization", "the-key").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let denied = http.get(format!("{url}/api/webhook")).header("authorization", "nope").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let raised = http
        .post(format!("{url}/emulator/events"))
        .json(&serde_json::json!({"event": {"type": "user.delete", "user": {"id": "u"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(raised.status(), 200);
    let report: serde_json::Value = raised.json().await.unwrap();
    assert_eq!(report["transactional"], true);
    child.kill().unwrap();
    child.wait().unwrap();
}
