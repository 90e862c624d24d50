//! `ringcast-loadtest`: see the crate docs and loadtest/README.md.

use std::process::ExitCode;

use clap::Parser;
use ringcast_loadtest::cli::{Cli, Command};
use ringcast_loadtest::orchestrate::{self, EXIT_ERROR};
use ringcast_loadtest::suite;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Worker => orchestrate::worker_main(),
        Command::Suite(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(suite::run(args)),
            Err(err) => Err(err.into()),
        },
        command => {
            let common = command.common().expect("a scenario");
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
            let threads = if common.processes > 1 { 1 } else { common.threads.unwrap_or(cores).max(1) };
            match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
                Ok(runtime) => runtime.block_on(orchestrate::run(command)),
                Err(err) => Err(err.into()),
            }
        }
    };
    match code {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            eprintln!("ringcast-loadtest: {err:#}");
            ExitCode::from(EXIT_ERROR as u8)
        }
    }
}
