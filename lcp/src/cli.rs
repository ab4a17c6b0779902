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

/// The flags (and positional arguments) of `cmd` and its subcommands that have no help text,
/// as `command path: --flag`. Every binary's tests assert this is empty, so `--help` explains
/// every flag (with its unit).
pub fn undocumented_args(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = if path.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{path} {}", cmd.get_name())
        };
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path}: --{id}"));
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, "", &mut out);
    out
}

/// Panic, naming them, if any flag of `cmd` or its subcommands has no help text (for each
/// binary's `every_flag_has_help` test).
pub fn assert_every_flag_has_help(cmd: &clap::Command) {
    let missing = undocumented_args(cmd);
    assert!(missing.is_empty(), "flags without help: {missing:?}");
}

/// `println!` for a CLI's output: when stdout is closed (`market offers | head -1`), stop
/// quietly with success, as Unix tools do, instead of panicking on the broken pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}
