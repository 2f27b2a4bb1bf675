//! output: a human table by default, or the same facts as JSON or YAML.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::Value;

/// `-o`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain words and tables.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Prints `value` as asked, `text` being its human form.
pub fn print(format: Format, value: &Value, text: &str) -> anyhow::Result<()> {
    match format {
        Format::Table => print!("{text}{}", if text.ends_with('\n') { "" } else { "\n" }),
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
    }
    Ok(())
}

/// The admin API's `/v1/deliveries` answer as a table.
pub fn deliveries_table(answer: &Value) -> String {
    let list = answer["deliveries"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no deliveries match\n".to_owned();
    }
    let mut out = format!(
        "{:<20} {:<8} {:<10} {:<16} {:<26} {:<38} {:>8}  {}\n",
        "POD", "ID", "STATE", "ROUTE", "TYPE", "EVENT ID", "ATTEMPTS", "LAST ERROR"
    );
    for d in &list {
        let text = |k: &str| d[k].as_str().map_or_else(|| d[k].to_string(), str::to_owned);
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<10} {:<16} {:<26} {:<38} {:>8}  {}",
            d["pod"].as_str().unwrap_or("(shared)"),
            text("id"),
            text("state"),
            text("route"),
            text("eventType"),
            text("eventId"),
            text("totalAttempts"),
            d["lastError"].as_str().unwrap_or("")
        );
    }
    if let Some(next) = answer["next"].as_u64() {
        let _ = writeln!(out, "(more: --after {next})");
    }
    out
}

/// The answer of replay or discard.
pub fn changed(verb: &str, answer: &Value) -> String {
    let ids: Vec<String> = answer["ids"].as_array().into_iter().flatten().map(Value::to_string).collect();
    let would = if answer["dryRun"] == true { "would be " } else { "" };
    match ids.len() {
        0 => "no delivery matched\n".to_owned(),
        n => format!("{n} deliver{} {would}{verb}: {}\n", if n == 1 { "y" } else { "ies" }, ids.join(", ")),
    }
}
