//! A progress bar with rate and ETA on stderr, for `create` and `restore`:
//! `[=====>    ]  45% 312/742 MB 98 MB/s ETA 4s`. Drawn only when stderr is a terminal, by a
//! ticker task at most [`REDRAWS_PER_S`] times a second, from a counter the work updates.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redraws a second, at most.
pub const REDRAWS_PER_S: u64 = 10;
/// Characters inside the brackets.
const BAR_WIDTH: usize = 30;

/// A running progress bar; [`Progress::finish`] draws it one last time and ends the line.
pub struct Progress {
    done: Arc<AtomicU64>,
    total: u64,
    start: Instant,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start counting towards `total` bytes; the bar shows only when stderr is a terminal.
    /// Needs a Tokio runtime (the ticker is a task).
    pub fn start(total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let ticker = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000 / REDRAWS_PER_S));
                loop {
                    tick.tick().await;
                    draw(done.load(Ordering::Relaxed), total, start.elapsed());
                }
            })
        });
        Progress {
            done,
            total,
            start,
            ticker,
        }
    }

    /// The counter the work adds its bytes to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    pub fn finish(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
            draw(
                self.done.load(Ordering::Relaxed),
                self.total,
                self.start.elapsed(),
            );
            eprintln!();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

fn draw(done: u64, total: u64, elapsed: Duration) {
    let mut err = std::io::stderr().lock();
    // A failed write to the terminal only loses a redraw.
    let _ = write!(err, "\r{}\x1b[K", line(done, total, elapsed));
    let _ = err.flush();
}

/// One line of the bar.
pub fn line(done: u64, total: u64, elapsed: Duration) -> String {
    let done = done.min(total);
    let frac = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((frac * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 {
        format!("{:.0}s", (total - done) as f64 / rate)
    } else {
        "?".into()
    };
    format!(
        "[{bar}] {:>3.0}% {:.0}/{:.0} MB {:.0} MB/s ETA {eta}",
        100.0 * frac,
        done as f64 / 1e6,
        total as f64 / 1e6,
        rate / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_share_sizes_rate_and_eta() {
        let l = line(312_000_000, 742_000_000, Duration::from_secs(4));
        assert_eq!(
            l, "[============>                 ]  42% 312/742 MB 78 MB/s ETA 6s",
            "{l}"
        );
        let end = line(10, 10, Duration::from_secs(1));
        assert!(
            end.starts_with(&format!("[{}]", "=".repeat(BAR_WIDTH))),
            "{end}"
        );
        assert!(end.contains("100%") && end.ends_with("ETA 0s"), "{end}");
        assert!(line(0, 0, Duration::ZERO).contains("ETA ?"));
    }
}
