//! The `headroom` binary: parse config, init tracing, run until a signal.

use clap::Parser;
use headroom::config::{Cli, Command, Config, LogFormat, EXIT_CONFIG};
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

fn config_errors(errors: &[String]) -> ExitCode {
    eprintln!("headroom: invalid configuration:");
    for e in errors {
        eprintln!("  {e}");
    }
    eprintln!("See `headroom --help`.");
    ExitCode::from(EXIT_CONFIG as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, check) = match cli.command {
        None => (cli.run, None),
        Some(Command::Run(a)) => (a, None),
        Some(Command::Check(c)) => (c.target, Some((c.for_, c.json))),
    };
    let cfg = match args.merged_map().and_then(|m| Config::from_map(&m)) {
        Ok(c) => c,
        Err(errors) => return config_errors(&errors),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match check {
        Some((for_, json)) => {
            let sample_for = match for_.as_deref().map(humantime::parse_duration) {
                None => std::time::Duration::ZERO,
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    return config_errors(&[format!(
                        "--for {:?}: {e}; expected a duration such as 30s",
                        for_.unwrap_or_default()
                    )])
                }
            };
            init_tracing(cfg.log_format, "warn");
            let code = runtime.block_on(headroom::check::run(cfg, sample_for, json));
            ExitCode::from(code as u8)
        }
        None => {
            init_tracing(cfg.log_format, "info");
            match runtime.block_on(headroom::app::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
