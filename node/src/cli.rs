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

/// glibc malloc settings for a long-running service, as environment variables:
/// - `MALLOC_ARENA_MAX=2`: glibc gives each thread that allocates an arena of its own (up to
///   8 per core), and memory freed in one is kept there for that arena's later use, so with
///   actix's workers and tokio's blocking threads resident memory crept up for as long as a
///   service ran while its live heap stayed flat (the soak, docs/BENCHMARKS.md);
/// - `MALLOC_MMAP_THRESHOLD_=131072`: by default glibc raises the threshold to the size of
///   each large block freed (up to 32 MiB), after which a service's piece and shard buffers
///   come from the arenas and stay there when freed; under a fixed threshold they are mapped
///   and given back to the system on free.
pub const SERVICE_MALLOC_ENV: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
];

/// Start a service under [`SERVICE_MALLOC_ENV`]: glibc reads it only when the process starts,
/// so unless `MALLOC_ARENA_MAX` is set already (by the operator, or by this), the binary
/// executes itself again: same pid, arguments and environment, plus those variables. Call
/// first thing in `main` of a `serve` command. Where the re-execution cannot happen (no
/// executable path), the service goes on with glibc's defaults. A no-op outside glibc.
pub fn tune_malloc_for_service() {
    use std::os::unix::process::CommandExt;
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os("MALLOC_ARENA_MAX").is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // exec only returns when it failed; the service then runs with glibc's defaults.
    let _failed = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .envs(SERVICE_MALLOC_ENV)
        .exec();
}

/// Say where a server listens, the line `node::process::spawn_server` (and people, and
/// scripts) wait for, and flush it at once: stdout is a pipe when a parent reads it.
pub fn announce_listening(url: &str) -> std::io::Result<()> {
    use std::io::Write;
    outln!("listening on {url}");
    std::io::stdout().flush()
}

/// Parse a size in bytes for a flag: plain bytes (`50000000000`) or with a unit, decimal
/// (`50GB`, `500MB`, `1.5TB`) or binary (`512MiB`, `8GiB`; `K`, `M`, `G`, `T` alone are
/// binary too). For clap's `value_parser`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: give bytes, or a number with B, KB, MB, GB, TB, KiB, \
                 MiB, GiB or TiB"
            ))
        }
    };
    let bad = || format!("{text:?} is not a size in bytes");
    // Exact for whole numbers; a fraction is rounded down to a whole byte.
    let bytes = match number.split_once('.') {
        None => number
            .parse::<u64>()
            .map_err(|_| bad())?
            .checked_mul(scale)
            .ok_or_else(|| format!("{text:?} is too large"))?,
        Some((whole, frac)) => {
            let whole: u64 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| bad())?
            };
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let frac_value: u128 = frac.parse().map_err(|_| bad())?;
            let frac_scale = 10u128.pow(frac.len() as u32);
            let total =
                u128::from(whole) * u128::from(scale) + frac_value * u128::from(scale) / frac_scale;
            u64::try_from(total).map_err(|_| format!("{text:?} is too large"))?
        }
    };
    Ok(bytes)
}

/// Parse an amount flag: whole minor units. A decimal point gets a message saying so, since
/// `1.5` is what a person types for one and a half units.
pub fn parse_minor_units(text: &str) -> Result<u64, String> {
    text.trim().parse::<u64>().map_err(|_| {
        format!(
            "{text:?} is not an amount: amounts are whole minor units (with 2 decimals, 150 \
             means 1.50)"
        )
    })
}

/// Bytes in binary units, one decimal.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("50000000000"), Ok(50_000_000_000));
        assert_eq!(parse_bytes("50GB"), Ok(50_000_000_000));
        assert_eq!(parse_bytes("50 gb"), Ok(50_000_000_000));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("1.5TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_bytes("0.5KiB"), Ok(512));
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("GB").is_err());
        assert!(parse_bytes("1.2.3GB").is_err());
        assert!(parse_bytes("99999999999TB").is_err());
    }

    #[test]
    fn amounts_are_whole_minor_units() {
        assert_eq!(parse_minor_units("150"), Ok(150));
        let e = parse_minor_units("1.5").expect_err("a fraction");
        assert!(e.contains("whole minor units"), "{e}");
    }
}
