//! The `headroom` binary: parse config, init tracing, run until a signal.

use headroom::config::{parse_args, CliError, Invocation, LogFormat, EXIT_CONFIG};
use std::process::ExitCode;

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Usage errors exit 64 (clap's included), so that `check`'s 1 and 2 always
/// mean a risk; help and version exit 0.
fn usage_error(e: CliError) -> ExitCode {
    match e {
        CliError::Clap(e) => {
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                ExitCode::SUCCESS
            }
        }
        CliError::Invalid(errors) => {
            eprintln!("headroom: invalid configuration:");
            for e in errors {
                eprintln!("  {e}");
            }
            eprintln!("See `headroom --help`.");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

fn main() -> ExitCode {
    let invocation = match parse_args(std::env::args_os()) {
        Ok(i) => i,
        Err(e) => return usage_error(e),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match invocation {
        Invocation::Check {
            config,
            sample_for,
            json,
        } => {
            init_tracing(config.log_format, "warn");
            let code = runtime.block_on(headroom::check::run(config, sample_for, json));
            ExitCode::from(code as u8)
        }
        Invocation::Run(config) => {
            init_tracing(config.log_format, "info");
            daemon_exit(runtime.block_on(headroom::app::run(config)))
        }
        Invocation::Inject(cmd) => ExitCode::from(headroom::inject::run(&cmd)),
        Invocation::Node(config) => {
            init_tracing(config.daemon.log_format, "info");
            daemon_exit(runtime.block_on(headroom::app::run_node(config)))
        }
    }
}

fn daemon_exit(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
