//! `cdn publish`: cut a file into pieces, hash them, and upload them through the publisher
//! service (which stores each on several agents), then have it sign the manifest. Resumes: the
//! publisher answers which pieces it still lacks.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use node::client::SignedClient;
use protocol::cdn::{PieceStored, Published, UploadAnswer, UploadRequest};
use protocol::KeyPair;
use serde::Serialize;

use crate::manifest;

/// Pieces uploaded at once.
pub const UPLOADS_IN_FLIGHT_MAX: usize = 4;

#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub publisher_url: String,
    pub title: Option<String>,
    pub mime: Option<String>,
    pub replicas: u32,
    pub price_per_view: u64,
    pub piece_bytes: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishSummary {
    pub content: String,
    pub size: u64,
    pub pieces: u64,
    pub uploaded: u64,
    pub replicas: u32,
    pub price_per_view: u64,
    pub seconds: f64,
}

fn mime_of(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("mov") => "video/quicktime",
        Some("ogv") => "video/ogg",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

fn read_piece(path: &Path, piece_bytes: u64, i: u64, size: u64) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(i * piece_bytes))?;
    let len = manifest::piece_len(size, piece_bytes, i);
    let mut buf = vec![0u8; usize::try_from(len)?];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

pub async fn publish(
    file: &Path,
    key: Arc<KeyPair>,
    options: &PublishOptions,
) -> anyhow::Result<PublishSummary> {
    use anyhow::Context;
    let started = Instant::now();
    node::client::check_url(&options.publisher_url)?;
    anyhow::ensure!(
        (manifest::PIECE_BYTES_MIN..=manifest::PIECE_BYTES_MAX).contains(&options.piece_bytes),
        "--piece-kib must give {} to {} bytes",
        manifest::PIECE_BYTES_MIN,
        manifest::PIECE_BYTES_MAX
    );
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    anyhow::ensure!(size > 0, "{} is empty", file.display());
    let piece_bytes = options.piece_bytes;
    // Hash every piece (off the async workers: it reads the whole file).
    let path = file.to_path_buf();
    let pieces = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        let mut out = Vec::new();
        let mut buf = vec![0u8; usize::try_from(piece_bytes)?];
        for i in 0..manifest::piece_count(size, piece_bytes) {
            let len = usize::try_from(manifest::piece_len(size, piece_bytes, i))?;
            f.read_exact(&mut buf[..len])?;
            out.push(protocol::sha256_hex(&buf[..len]));
        }
        Ok(out)
    })
    .await??;
    let http = node::client::http_client(&node::client::ClientOptions::default())?;
    let client = SignedClient::new(http, &options.publisher_url, key);
    let counters = node::client::ClockCounter::default();
    let request = UploadRequest {
        title: options.title.clone().unwrap_or_else(|| {
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        mime: options
            .mime
            .clone()
            .unwrap_or_else(|| mime_of(file).to_owned()),
        size,
        piece_bytes,
        pieces: pieces.clone(),
        price_per_view: options.price_per_view,
        replicas: options.replicas,
    };
    let answer: UploadAnswer = client
        .command(
            "POST",
            "/v1/uploads",
            serde_json::to_vec(&request)?,
            counters.next(),
        )
        .await
        .context("the publisher refused the upload")?
        .value;
    let content = answer.content.clone();
    let total = answer.missing.len() as u64;
    let progress_on = options.progress && std::io::stderr().is_terminal();
    let mut done = 0u64;
    {
        let uploads = futures_util::stream::iter(answer.missing.iter().copied().map(|i| {
            let (client, counters, file) = (&client, &counters, file.to_path_buf());
            let content = content.clone();
            async move {
                let bytes =
                    tokio::task::spawn_blocking(move || read_piece(&file, piece_bytes, i, size))
                        .await??;
                client
                    .command::<PieceStored>(
                        "PUT",
                        &format!("/v1/uploads/{content}/pieces/{i}"),
                        bytes,
                        counters.next(),
                    )
                    .await
                    .with_context(|| format!("uploading piece {i}"))?;
                anyhow::Ok(())
            }
        }))
        .buffer_unordered(UPLOADS_IN_FLIGHT_MAX);
        futures_util::pin_mut!(uploads);
        while let Some(r) = uploads.next().await {
            r?;
            done += 1;
            if progress_on {
                crate::publish::draw_bar(done, total, started);
            }
        }
    }
    if progress_on {
        eprintln!();
    }
    client
        .command::<Published>(
            "POST",
            &format!("/v1/uploads/{content}/publish"),
            Vec::new(),
            counters.next(),
        )
        .await
        .context("the publisher did not publish")?;
    Ok(PublishSummary {
        content,
        size,
        pieces: pieces.len() as u64,
        uploaded: total,
        replicas: options.replicas,
        price_per_view: options.price_per_view,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `[=====>     ] 45% 9/20 pieces ETA 3s` on stderr.
pub fn draw_bar(done: u64, total: u64, started: Instant) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let secs = started.elapsed().as_secs_f64();
    let eta = if done > 0 {
        secs / done as f64 * (total - done) as f64
    } else {
        0.0
    };
    eprint!(
        "\r[{}>{}] {:3}% {done}/{total} pieces ETA {eta:.0}s ",
        "=".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize),
        (done * 100).checked_div(total).unwrap_or(100)
    );
}
