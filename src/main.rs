use std::process::ExitCode;

use clap::Parser;
use sovereign::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Exit 0: the plan could run; 1: it would be stopped; 2: bad input.
        Command::Plan(args) => return sovereign::cli::plan::run(&args),
        // The verdict is the exit code (0 compliant, 1 non-compliant, 2 unknown or bad input).
        Command::Residency(args) => {
            let sovereign::cli::residency::ResidencyCommand::Scan(scan) = &args.command;
            return match runtime() {
                Ok(rt) => rt.block_on(sovereign::cli::residency::run(scan)),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        // Exit 0: attested; 1: written, but attests a problem; 2: bad input (verify: 0 valid, 1 not).
        Command::Report(args) => {
            use sovereign::cli::report::{self, ReportCommand};
            return match &args.command {
                Some(ReportCommand::Verify(v)) => report::verify(v),
                None => match runtime() {
                    Ok(rt) => rt.block_on(report::run(&args.make)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                },
            };
        }
        Command::Crd(args) => sovereign::cli::crd::run(&args).map_err(|e| e.to_string()),
        Command::Run(args) => runtime().and_then(|rt| {
            rt.block_on(sovereign::controller::run(args))
                .map_err(|e| e.to_string())
        }),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sovereign::sandbox::cli::run(&args).map_err(|e| e.to_string()),
        #[cfg(feature = "sandbox")]
        Command::ControlPlane(args) => {
            sovereign::sandbox::cli::control_plane(&args).map_err(|e| e.to_string())
        }
        #[cfg(feature = "sandbox")]
        Command::Supervise(args) => {
            return ExitCode::from(sovereign::sandbox::supervise::run(&args));
        }
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
