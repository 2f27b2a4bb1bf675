//! Reading the JSON log lines of a child process (receiver, operator): the
//! address a "listening" line announces, while the pipe keeps being drained
//! so the child never blocks on a full pipe.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;

use serde_json::Value;

/// Drains `stdout` on a thread, calling `on_line` for every line, and sends
/// the string `field` of the first line whose `message` is `message`.
pub fn announced(
    stdout: impl Read + Send + 'static,
    message: &'static str,
    field: &'static str,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == message
            {
                let _ = tx.send(v[field].as_str().unwrap_or_default().to_owned());
                sent = true;
            }
            on_line(&line);
        }
    });
    rx
}
