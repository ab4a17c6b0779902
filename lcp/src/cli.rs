//! What every binary's `main` shares: logs to stderr (`RUST_LOG` overrides the default level),
//! and errors as one line on stderr with exit code 1 (clap exits 2 on bad usage by itself).

/// Send `tracing` output to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init_logging(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for people at a terminal, not in log files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Print `error: <cause>: <cause>...` on one line and exit 1, or return on success.
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
