use std::process::ExitCode;

use clap::Parser;
use sovereign::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd(args) => sovereign::cli::crd::run(&args).map_err(|e| e.to_string()),
        Command::Run(args) => runtime().and_then(|rt| {
            rt.block_on(sovereign::controller::run(args))
                .map_err(|e| e.to_string())
        }),
        Command::Mover(args) => runtime().and_then(|rt| {
            rt.block_on(sovereign::mover::cli::run(args))
                .map_err(|e| e.to_string())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
