//! `tenantctl`: the all-in-one dev stack and a command-line client of the
//! global GraphQL API.

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

mod api;
mod backup;
mod dev;
mod devkey;
mod directory;
mod flags;
mod impacted;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tenantctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the global tier and its cells in one process on SQLite.
    Dev(dev::Args),
    /// Mint a token from the dev signing key (the JWT alone on stdout).
    Token(token::Args),
    /// Tenants: create, get, list.
    #[command(subcommand)]
    Tenants(api::TenantsCmd),
    /// List the registered cells.
    Cells(api::Conn),
    /// Feature flags: fetch a cell's snapshot, evaluate offline from one.
    #[command(subcommand)]
    Flags(flags::FlagsCmd),
    /// Which tenants a scope touches (cell, region, plan, flag variant,
    /// config value, incident, maintenance window), as a table or JSON.
    Impacted(impacted::Args),
    /// Disaster recovery of the global directory.
    #[command(subcommand)]
    Directory(directory::DirectoryCmd),
    /// Write a consistent snapshot of the global database to a file.
    Backup(backup::BackupArgs),
    /// Restore a `tenantctl backup` file into a new, empty global database.
    Restore(backup::RestoreArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Dev(a) => dev::run(a).await,
        Command::Token(a) => token::run(a),
        Command::Tenants(c) => api::tenants(c).await,
        Command::Cells(c) => api::cells(c).await,
        Command::Flags(c) => flags::run(c).await,
        Command::Impacted(a) => impacted::run(a).await,
        Command::Directory(c) => directory::run(c).await,
        Command::Backup(a) => backup::backup(a).await,
        Command::Restore(a) => backup::restore(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
