//! `citybrain` binary: parses the command line, starts logging and hands over to [`citybrain::cli::run`].

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = citybrain::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Errors are for users: the message chain, without a backtrace even when RUST_BACKTRACE is set.
    if let Err(e) = citybrain::cli::run(cli) {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
