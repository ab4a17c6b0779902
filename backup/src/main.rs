//! The `backup` binary. Errors are one line on stderr; exit codes: 0 success, 1 error,
//! 2 bad usage, 3 wrong password, 4 data missing or corrupt, 5 a service failed.

use std::path::{Path, PathBuf};

use backup::commands::{self, InitOptions};
use backup::crypto::ExportedKey;
use backup::repo::{Repo, Secret, Wallet};
use backup::Error;
use clap::{Parser, Subcommand};

/// `println!` for the CLI's output: when stdout is closed (`backup ls | head`), stop quietly
/// with success, as Unix tools do, instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod run;
use run::run;

#[derive(Parser)]
#[command(
    name = "backup",
    version,
    about = "Encrypted, deduplicated backups, erasure-coded across storage agents"
)]
struct Cli {
    /// Local configuration and cache (the repository itself lives on the agents); default
    /// ~/.config/lcp-backup
    #[arg(long, env = "BACKUP_CONFIG_DIR", global = true)]
    config_dir: Option<PathBuf>,
    /// Read the password from this file (else BACKUP_PASSWORD, else a prompt)
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    /// Open the repository with this exported key file (`backup key export`) instead of the
    /// password (any command but init, which makes a new key)
    #[arg(long)]
    key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

/// `--key-file` after the command's name too (`backup restore ... --key-file F`); not on
/// `init`, which makes a new key.
#[derive(clap::Args)]
struct KeyFileArg {
    /// Open the repository with this exported key file (`backup key export`) instead of the
    /// password
    #[arg(long = "key-file", value_name = "KEY_FILE")]
    path: Option<PathBuf>,
}

/// Where a repository is, for a command run on a new machine (no configuration yet):
/// `restore`, `snapshots` and `ls` take these, as restic users look before they restore.
#[derive(clap::Args)]
struct RecoverArgs {
    /// The repository's id (on a new machine)
    #[arg(long)]
    repo: Option<String>,
    /// The market's URL (on a new machine)
    #[arg(long, env = "BACKUP_MARKET")]
    market: Option<String>,
    /// The LCP key file that bought the contracts (on a new machine)
    #[arg(long, env = "BACKUP_WALLET")]
    wallet: Option<PathBuf>,
}

/// `--json` on every command.
#[derive(clap::Args)]
struct JsonArg {
    /// Print one JSON document on stdout (amounts in minor units) instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a repository: buy k + m contracts through the market; prints its id, the agents
    /// chosen and what they cost
    Init {
        /// The market's URL (http://HOST:PORT)
        #[arg(long, env = "BACKUP_MARKET")]
        market: String,
        /// LCP key file that pays for and owns the contracts
        #[arg(long, env = "BACKUP_WALLET")]
        wallet: PathBuf,
        /// Shards each object is split into (k); any k of the k + m shards rebuild it
        #[arg(long, default_value_t = 4)]
        data_shards: usize,
        /// Agents that may be lost without losing data (m)
        #[arg(long, default_value_t = 2)]
        parity_shards: usize,
        /// Space bought on each agent, in bytes or with a unit (256MiB, 1GiB): the repository
        /// holds about k x this of packed (deduplicated, compressed) data
        #[arg(long, default_value_t = 1 << 30, value_parser = node::cli::parse_bytes)]
        slot_bytes: u64,
        /// Length of the contracts, in seconds (default 30 days); `backup repair` renews them
        #[arg(long, default_value_t = 30 * 86_400)]
        duration_s: u64,
        /// Highest acceptable probability (0 to 1) that more than m of the chosen agents fail
        /// within the contracts' term, by the market's reliability estimates
        #[arg(long, default_value_t = 0.05)]
        max_failure_probability: f64,
        /// Issuer (entity id, ed25519:...) whose currency pays the contracts (default: the
        /// currency most online agents accept)
        #[arg(long, env = "BACKUP_CURRENCY")]
        currency: Option<String>,
        /// Pay from a bank account instead of the wallet (DESIGN 14): the bank's URL. The
        /// wallet key still signs the backup's requests; the token's currency pays
        #[arg(long, env = "BACKUP_BANK", requires = "bank_token")]
        bank: Option<String>,
        /// The app token the bank granted this backup (`bank token grant`): remembered in the
        /// configuration directory, readable by its owner only
        #[arg(
            long,
            env = "BACKUP_BANK_TOKEN",
            requires = "bank",
            hide_env_values = true
        )]
        bank_token: Option<String>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Back up PATHs as a new snapshot
    Create {
        /// Files and directories to back up (each recorded by its name as typed)
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Leave out paths matching this glob (repeatable; `*` within a component, `**`
        /// across)
        #[arg(long)]
        exclude: Vec<String>,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List snapshots
    Snapshots {
        #[command(flatten)]
        at: RecoverArgs,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List the files of a snapshot
    Ls {
        /// A snapshot id, its first characters, or `latest`
        snapshot: String,
        #[command(flatten)]
        at: RecoverArgs,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Verify the repository and audit every agent (Merkle proofs of random shard leaves);
    /// exit 4 on any problem
    Check {
        /// Also read every shard and verify it
        #[arg(long)]
        read_data: bool,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Rebuild missing or damaged shards from the survivors (new agents replace dead ones),
    /// renew contracts that end soon, and grow the repository
    Repair {
        /// Renew contracts ending within this many days (default: within the last quarter of
        /// their term)
        #[arg(long)]
        renew_within_days: Option<u64>,
        /// Add about this many bytes of packed capacity: every slot gets a new, larger
        /// contract (on its agent when it has room, else a spare) holding its shards
        #[arg(long, value_name = "BYTES", value_parser = node::cli::parse_bytes)]
        grow: Option<u64>,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove snapshots by id, or those the --keep-* rules do not keep; --prune then deletes
    /// unused data
    Forget {
        /// Snapshots to remove: ids (or their first characters), instead of --keep-* rules
        snapshots: Vec<String>,
        /// Keep the last N snapshots (of each host and set of paths)
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_last: usize,
        /// Keep the newest snapshot of each of the last N days
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_daily: usize,
        /// Keep the newest snapshot of each of the last N weeks
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_weekly: usize,
        /// Keep the newest snapshot of each of the last N months (30 days)
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_monthly: usize,
        /// Then delete the data no remaining snapshot uses (as `backup prune`)
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove the repository's locks: after a killed backup or prune, when none is running
    Unlock {
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Delete data no snapshot uses
    Prune {
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// The wallet's record chain (DESIGN 11): each deal it recorded with an agent, and
    /// whether the agent agreed; unanswered proposals are sent again first
    Records {
        #[command(flatten)]
        out: JsonArg,
    },
    /// Repository size, layout, capacity and spending
    Stats {
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Pay the running tabs the agents keep for this wallet (by LCP transfer to each tab's
    /// line id) and countersign the lower balances (DESIGN 12)
    Settle {
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// The password-wrapped key
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// Restore a snapshot into --target; on a fresh machine give --repo, --market and --wallet
    Restore {
        /// A snapshot id, its first characters, or `latest`
        snapshot: String,
        /// Directory to restore into (created if missing; files there are replaced)
        #[arg(long)]
        target: PathBuf,
        /// Restore only paths matching this glob (repeatable; a directory brings its contents)
        #[arg(long)]
        include: Vec<String>,
        #[command(flatten)]
        at: RecoverArgs,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        out: JsonArg,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Write the repository's key in the clear (mode 0600): with `--key-file FILE` it opens
    /// the repository instead of the password. Keep it as safe as the data itself
    Export {
        /// File to write the key to (created with mode 0600)
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        key: KeyFileArg,
        #[command(flatten)]
        json: JsonArg,
    },
}

impl Cmd {
    /// The `--key-file` given after the command's name, if any (`init` has none).
    fn key_file(&self) -> Option<&PathBuf> {
        match self {
            Cmd::Init { .. } | Cmd::Records { .. } => None,
            Cmd::Create { key, .. }
            | Cmd::Snapshots { key, .. }
            | Cmd::Ls { key, .. }
            | Cmd::Check { key, .. }
            | Cmd::Repair { key, .. }
            | Cmd::Forget { key, .. }
            | Cmd::Unlock { key, .. }
            | Cmd::Prune { key, .. }
            | Cmd::Stats { key, .. }
            | Cmd::Settle { key, .. }
            | Cmd::Restore { key, .. }
            | Cmd::Key {
                command: KeyCmd::Export { key, .. },
            } => key.path.as_ref(),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    node::cli::init_logging("warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let dir = config_dir(&cli.config_dir);
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {e}");
        // Contracts paid for and left unused by a failure are not lost without a word.
        if let Some(note) = backup::purchases::unused_note(&dir) {
            eprintln!("note: {note}");
        }
        std::process::exit(e.exit_code());
    }
}

/// The repository configured in `dir`, or, on a new machine (no configuration yet), the one
/// `at` names, found through the market with the wallet that bought its contracts.
async fn open_or_recover(dir: &Path, auth: &Auth, at: RecoverArgs) -> Result<Repo, Error> {
    match (at.repo, at.market, at.wallet) {
        (Some(id), Some(market), Some(wallet)) if !dir.join("repo.json").exists() => {
            node::client::check_url(&market).map_err(|e| Error::Usage(format!("--market: {e}")))?;
            let buyer = wallet_key(dir, &wallet)?;
            let r = Repo::recover(dir, &id, &market, &secret(auth)?, &buyer, http()?).await?;
            remember_wallet(dir, &wallet)?;
            Ok(r)
        }
        (None, None, None) | (Some(_), Some(_), Some(_)) => open(dir, auth).await,
        _ => Err(Error::Usage(
            "--repo, --market and --wallet go together (a command on a new machine)".into(),
        )),
    }
}

fn config_dir(cli: &Option<PathBuf>) -> PathBuf {
    cli.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".config/lcp-backup")
    })
}

/// A new repository's password: asked twice at a prompt (a typo would lock the repository
/// for good), like restic's `init`.
fn new_password(file: &Option<PathBuf>) -> Result<String, Error> {
    let first = password(file)?;
    if file.is_none() && std::env::var_os("BACKUP_PASSWORD").is_none() {
        let again = rpassword::prompt_password("repeat the password: ")
            .map_err(|e| Error::Usage(format!("no password: {e}")))?;
        if first != again {
            return Err(Error::Usage("the passwords differ".into()));
        }
    }
    if first.is_empty() {
        return Err(Error::Usage("an empty password protects nothing".into()));
    }
    Ok(first)
}

fn password(file: &Option<PathBuf>) -> Result<String, Error> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::Usage(format!("{}: {e}", f.display())))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("BACKUP_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password("repository password: ").map_err(|e| {
        Error::Usage(format!(
            "no password: set BACKUP_PASSWORD, --password-file, or run on a terminal ({e})"
        ))
    })
}

/// The wallet key at `path`, paying through the bank `dir` remembers (`backup init --bank`),
/// or on a new machine the one `BACKUP_BANK` and `BACKUP_BANK_TOKEN` name.
fn wallet_key(dir: &Path, path: &Path) -> Result<Wallet, Error> {
    let wallet = Wallet::load(path)?;
    let file = dir.join(backup::repo::BANK_FILE);
    let link = match std::fs::read(&file) {
        Ok(bytes) => Some(
            serde_json::from_slice::<backup::repo::BankLink>(&bytes)
                .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match (
                std::env::var("BACKUP_BANK"),
                std::env::var("BACKUP_BANK_TOKEN"),
            ) {
                (Ok(url), Ok(token)) => Some(backup::repo::BankLink { url, token }),
                _ => None,
            }
        }
        Err(e) => return Err(Error::Usage(format!("{}: {e}", file.display()))),
    };
    match link {
        Some(link) => wallet.with_bank(link),
        None => Ok(wallet),
    }
}

/// Remember the bank a repository pays through, for every later command.
fn remember_bank(dir: &Path, link: &backup::repo::BankLink) -> Result<(), Error> {
    use std::io::Write;
    let bytes = serde_json::to_vec(link).map_err(|e| Error::Io(e.to_string()))?;
    backup::repo::private_file(&dir.join(backup::repo::BANK_FILE))?.write_all(&bytes)?;
    Ok(())
}

/// Longest a request waits for an agent's next bytes: one that hangs (a stopped process, a
/// dead link) then counts as not answering, and reads and writes go on without it.
const READ_MS_MAX: u64 = 30_000;

fn http() -> Result<reqwest::Client, Error> {
    node::client::http_client(&node::client::ClientOptions {
        read_ms_max: Some(READ_MS_MAX),
        ..Default::default()
    })
    .map_err(|e| Error::Usage(e.to_string()))
}

/// The wallet path remembered beside the local config.
fn remembered_wallet(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::read_to_string(dir.join("wallet"))
        .map(|s| PathBuf::from(s.trim()))
        .map_err(|_| {
            Error::NoRepository(format!(
                "{} has no repository (run `backup init`)",
                dir.display()
            ))
        })
}

fn remember_wallet(dir: &Path, wallet: &Path) -> Result<(), Error> {
    let abs = std::fs::canonicalize(wallet)?;
    use std::io::Write;
    backup::repo::private_file(&dir.join("wallet"))?.write_all(abs.to_string_lossy().as_bytes())?;
    Ok(())
}

/// Where the repository's key comes from: `--key-file`, else the password.
struct Auth {
    password_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// The exported key file when `--key-file` is given, else the password.
fn secret(auth: &Auth) -> Result<Secret, Error> {
    match &auth.key_file {
        Some(f) => Ok(Secret::Key(ExportedKey::load(f)?)),
        None => Ok(Secret::Password(password(&auth.password_file)?)),
    }
}

async fn open(dir: &Path, auth: &Auth) -> Result<Repo, Error> {
    let wallet = remembered_wallet(dir)?;
    let repo = Repo::open_local(dir, &secret(auth)?, &wallet_key(dir, &wallet)?, http()?)?;
    if auth.key_file.is_some() {
        repo.verify_key().await?;
    }
    Ok(repo)
}

/// Contracts end: a scheduled `create` that never runs `repair` would lose the repository
/// without a word. Warn (on stderr) when any is within its renewal window or over.
fn warn_renewal(repo: &Repo) {
    let now_s = node::now_s();
    let due: Vec<usize> = (0..repo.config.slots.len())
        .filter(|&i| backup::maintain::due_for_renewal(&repo.config.slots[i], now_s, None))
        .collect();
    let Some(first_end) = due.iter().map(|&i| repo.config.slots[i].end_s).min() else {
        return;
    };
    let when = protocol::market::format_rfc3339(first_end);
    if first_end <= now_s {
        eprintln!(
            "warning: the contracts of slots {due:?} have ended ({when}): run `backup repair` now"
        );
    } else {
        eprintln!(
            "warning: the contracts of slots {due:?} end soon (first at {when}): run `backup repair` to renew them"
        );
    }
}

fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce()) -> Result<(), Error> {
    if json {
        out!(
            "{}",
            serde_json::to_string(value).map_err(|e| Error::Io(e.to_string()))?
        );
    } else {
        human();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag of every command says what it is, and flags with units name them.
    #[test]
    fn every_flag_has_help_with_its_unit() {
        fn walk(c: &clap::Command, path: &str) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                assert!(!help.is_empty(), "{path} {id} has no help");
                if id.ends_with("_s") {
                    assert!(help.contains("seconds"), "{path} {id}: {help}");
                }
                if id.ends_with("bytes") || id == "grow" {
                    assert!(help.contains("bytes"), "{path} {id}: {help}");
                }
                if id.ends_with("days") {
                    assert!(help.contains("days"), "{path} {id}: {help}");
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()));
            }
        }
        let mut cli = Cli::command();
        cli.build();
        node::cli::assert_every_flag_has_help(&cli);
        walk(&cli, "backup");
        // init makes a new key: it offers no --key-file.
        let init = cli.find_subcommand("init").expect("init");
        assert!(
            init.get_arguments()
                .all(|a| a.get_long() != Some("key-file")),
            "init offers --key-file"
        );
        assert!(cli
            .find_subcommand("restore")
            .expect("restore")
            .get_arguments()
            .any(|a| a.get_long() == Some("key-file")));
    }
}
