//! The `headroom` binary: parse config, init tracing, run until a signal.

use headroom::config::{parse_args, CliError, Invocation, LogFormat, LogLevel, EXIT_CONFIG};
use std::process::ExitCode;

/// Logs to stderr at `--log-level` when given, else as `RUST_LOG` says,
/// else at `default_level`.
fn init_tracing(format: LogFormat, level: Option<LogLevel>, default_level: &str) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l.as_str()),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
    };
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
    // A current-thread runtime, for the commands that need one.
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    match invocation {
        Invocation::Check {
            config,
            sample_for,
            json,
        } => {
            init_tracing(config.log_format, config.log_level, "warn");
            let code = runtime().block_on(headroom::check::run(config, sample_for, json));
            ExitCode::from(code as u8)
        }
        Invocation::Run(config) => {
            init_tracing(config.log_format, config.log_level, "info");
            daemon_exit(runtime().block_on(headroom::app::run(config)))
        }
        Invocation::Inject(cmd) => ExitCode::from(headroom::inject::run(&cmd)),
        Invocation::Node(config) => {
            init_tracing(config.daemon.log_format, config.daemon.log_level, "info");
            daemon_exit(runtime().block_on(headroom::app::run_node(config)))
        }
        Invocation::Status(args) => {
            let code = runtime().block_on(headroom::status_cmd::run(args));
            ExitCode::from(code as u8)
        }
        Invocation::Completions(shell) => print_out(&headroom::cli::completions(shell)),
        Invocation::Man(name) => match headroom::cli::man(name.as_deref()) {
            Some(page) => print_out(page.as_bytes()),
            None => ExitCode::from(EXIT_CONFIG as u8),
        },
    }
}

/// Writes to stdout; a reader that stopped early (`| head`) is no error.
fn print_out(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom: writing to stdout: {e}");
            ExitCode::FAILURE
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
