//! The devnet's bank (`devnet up --bank`, DESIGN 14, seed 000 section 5.2): a `bank serve`
//! taking the issuer's currency, and every agent banking opaquely there: the customer
//! `agent-<i>`, whose app token (limit 0: it reads deposits, it spends nothing) the agent is
//! initialised with (`storage-agent init --bank URL --bank-token T`). Buyers then pay
//! `agent-<i>@<bank host>` and the agents learn of payments from the bank.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::{bin, entity_of_key, path_arg, Service};

/// The bank's data directory under the devnet's.
pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("bank")
}

/// The customer an agent banks as.
pub fn customer_of_agent(i: usize) -> String {
    format!("agent-{i}")
}

/// The bank's service (not started), taking the currencies of `issuer_urls`, with its
/// exchange when there are several.
pub(crate) fn service(
    bin_dir: &Path,
    dir: &Path,
    issuer_urls: &[String],
    listen: String,
) -> anyhow::Result<Service> {
    let data = data_dir(dir);
    let mut args = vec![
        "serve".into(),
        "--data".into(),
        path_arg(&data),
        "--listen".into(),
        listen,
    ];
    for url in issuer_urls {
        args.extend(["--issuer".into(), url.clone()]);
    }
    if issuer_urls.len() > 1 {
        // Two currencies or more: one can be traded for another.
        args.push("--exchange".into());
    }
    Ok(Service {
        name: "bank".into(),
        url: String::new(),
        entity: entity_of_key(&data.join("identity.key"))?,
        data: data.clone(),
        netns: None,
        program: bin(bin_dir, "bank")?,
        args,
        child: None,
    })
}

/// Open the account `customer` at the bank (a random password: nobody logs in as an
/// agent) and grant its app token for `issuer`'s currency with limit 0; answers the token.
/// An account that exists already (a devnet started again) gets a new token.
pub(crate) fn open_account(
    bin_dir: &Path,
    dir: &Path,
    customer: &str,
    issuer: &str,
) -> anyhow::Result<String> {
    let bank_bin = bin(bin_dir, "bank")?;
    let data = data_dir(dir);
    let listed = run(&bank_bin, &data, &["customer", "list"], None)?;
    if !listed.lines().any(|l| l.trim() == customer) {
        // A fresh key's id is random enough for a password nobody will type.
        let password =
            protocol::sha256_hex(protocol::KeyPair::generate()?.entity().as_str().as_bytes());
        run(
            &bank_bin,
            &data,
            &["customer", "add", "--name", customer, "--password-stdin"],
            Some(&password),
        )?;
    }
    let token = run(
        &bank_bin,
        &data,
        &[
            "token",
            "grant",
            "--customer",
            customer,
            "--issuer",
            issuer,
            "--limit",
            "0",
            "--label",
            "storage agent (devnet)",
        ],
        None,
    )?;
    Ok(token.trim().to_owned())
}

/// `bank ARGS --data <the devnet's bank>` with `stdin` on its input (tests and scripts add
/// customers and grant tokens this way); its stdout, trimmed, or its error.
pub fn cli(dir: &Path, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    let bank_bin = bin(&crate::default_bin_dir()?, "bank")?;
    Ok(run(&bank_bin, &data_dir(dir), args, Some(stdin))?
        .trim()
        .to_owned())
}

/// Run `bank ARGS --data DATA`, with `stdin` written to its input; its stdout.
fn run(bank_bin: &Path, data: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new(bank_bin)
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run bank")?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        // A command refused before it reads its input has exited: its status says why.
        if let Err(e) = input.write_all(text.as_bytes()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(e.into());
            }
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "bank {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
