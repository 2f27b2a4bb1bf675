//! The README and the book cannot rot: every command in their `sh` blocks must appear in
//! `.ci/run` or in a test that runs it (emulator-only flags aside), so a
//! command changed in one place and not the other fails here.

#![allow(clippy::unwrap_used, missing_docs)]

use fusionhook_tests::tools::workspace_root;

/// Flags only the emulators need (they serve no OpenAPI documents); the
/// README shows the commands as users type them against a real cluster.
const EMULATOR_ONLY: [&str; 2] = ["--validate=false", "--disable-openapi-validation"];

fn normalize(text: &str) -> String {
    text.replace("\\\n", " ").split_whitespace().filter(|w| !EMULATOR_ONLY.contains(w)).collect::<Vec<_>>().join(" ")
}

/// The README and the book's pages: not the generated reference, nor the
/// runbooks (commands for a live cluster, with the alert's NS and NAME).
fn documents() -> Vec<std::path::PathBuf> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if entry.is_dir() && !entry.ends_with("reference") && !entry.ends_with("runbooks") {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|e| e == "md") {
                files.push(entry);
            }
        }
    }
    files
}

fn readme_commands() -> Vec<String> {
    let readme: String = documents().iter().map(|f| std::fs::read_to_string(f).unwrap() + "\n").collect();
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        match (in_sh, line.trim()) {
            (false, "```sh") => in_sh = true,
            (true, "```") => in_sh = false,
            (true, text) if !text.is_empty() && !text.starts_with('#') => {
                pending.push_str(text.trim_end_matches('\\'));
                pending.push(' ');
                if !text.ends_with('\\') {
                    commands.push(normalize(&std::mem::take(&mut pending)));
                }
            }
            _ => {}
        }
    }
    commands
}

fn exercisers() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = vec![root.join(".ci/run")];
    for dir in ["tests/tests", "operator/tests", "receiver/tests"] {
        files.extend(
            std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "rs")),
        );
    }
    files.push(root.join("tests/src/bin/sandbox/main.rs"));
    files
        .into_iter()
        .filter(|p| !p.ends_with("readme.rs"))
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), normalize(&std::fs::read_to_string(&p).unwrap())))
        .collect()
}

#[test]
fn every_readme_command_is_run_by_ci_or_a_test() {
    let commands = readme_commands();
    assert!(commands.len() >= 15, "{commands:?}");
    assert!(commands.contains(&"cargo test --workspace --locked".to_owned()));
    assert!(commands.contains(&"cargo run --release -p fusionhook-tests --bin sandbox".to_owned()));
    let exercisers = exercisers();
    let unexercised: Vec<&String> = commands.iter().filter(|c| !exercisers.iter().any(|(_, text)| text.contains(c.as_str()))).collect();
    assert!(unexercised.is_empty(), "commands in the README or docs/ that neither CI nor a test runs: {unexercised:#?}");
}
