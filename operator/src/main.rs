//! `fusionhook-operator crd` prints the CustomResourceDefinition.

use clap::{Parser, Subcommand};

/// The fusionhook operator.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the FusionAuthWebhook CustomResourceDefinition (YAML).
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", fusionhook_operator::crd_yaml()?),
    }
    Ok(())
}
