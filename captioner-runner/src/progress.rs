//! What a run tells the user on stderr: a progress line redrawn in place (only on a
//! terminal, through indicatif), messages that scroll above it, and a one-line summary
//! at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub captioned: usize,
    pub failed: usize,
    /// Captioned by an earlier run (or their tag files exist).
    pub skipped: usize,
    pub elapsed: Duration,
}

impl Summary {
    /// Images through the model (or failed) per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.captioned + self.failed) as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "captioned {}, failed {}, skipped {} in {:.1} s ({:.2} images/s)",
            self.captioned,
            self.failed,
            self.skipped,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

/// Total not known (yet).
const UNKNOWN: u64 = u64::MAX;

pub struct Progress {
    /// Draw the progress line (stderr is a terminal and not quiet).
    draw: bool,
    quiet: bool,
    start: Instant,
    /// Hidden unless drawn; it keeps the line's redraws to a few a second.
    bar: indicatif::ProgressBar,
    /// Images to go through, once a counting pass has found them all.
    total: Arc<AtomicU64>,
    counts: Summary,
}

impl Progress {
    /// `draw`: redraw a progress line; `quiet`: no progress line, no summary (messages
    /// such as errors are still printed).
    pub fn new(draw: bool, quiet: bool) -> Self {
        let draw = draw && !quiet;
        let bar = if draw {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg}").expect("a valid template"),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self {
            draw,
            quiet,
            start: Instant::now(),
            bar,
            total: Arc::new(AtomicU64::new(UNKNOWN)),
            counts: Summary::default(),
        }
    }

    /// Whether the progress line is drawn (so a total is worth counting).
    pub fn draws(&self) -> bool {
        self.draw
    }

    /// Where a counting pass puts the number of images.
    pub fn total(&self) -> Arc<AtomicU64> {
        self.total.clone()
    }

    pub fn add(&mut self, captioned: usize, failed: usize, skipped: usize) {
        self.counts.captioned += captioned;
        self.counts.failed += failed;
        self.counts.skipped += skipped;
        if self.draw {
            self.bar.set_message(self.line());
        }
    }

    /// Prints a line above the progress line.
    pub fn message(&mut self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Prints a note, unless quiet.
    pub fn note(&mut self, line: &str) {
        if !self.quiet {
            self.message(line);
        }
    }

    /// The progress line: done/total, rate, time left.
    pub fn line(&self) -> String {
        let c = &self.counts;
        let done = c.captioned + c.failed + c.skipped;
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            (c.captioned + c.failed) as f64 / elapsed
        } else {
            0.0
        };
        let total = self.total.load(Ordering::Relaxed);
        let mut line = if total == UNKNOWN {
            format!("{done} images")
        } else {
            let total = total.max(done as u64);
            let width = 20;
            let filled = (done as u64 * width as u64)
                .checked_div(total)
                .map_or(width, |f| f as usize);
            format!(
                "{done}/{total} [{}{}]",
                "#".repeat(filled),
                "-".repeat(width - filled)
            )
        };
        line.push_str(&format!("  {rate:.1} images/s"));
        if total != UNKNOWN && rate > 0.0 {
            let left = (total.saturating_sub(done as u64)) as f64 / rate;
            line.push_str(&format!("  ETA {}", clock(left)));
        }
        if c.failed > 0 || c.skipped > 0 {
            line.push_str(&format!("  ({} failed, {} skipped)", c.failed, c.skipped));
        }
        line
    }

    /// Clears the progress line and prints the summary (unless quiet).
    pub fn finish(&mut self) -> Summary {
        self.counts.elapsed = self.start.elapsed();
        self.bar.finish_and_clear();
        if !self.quiet {
            eprintln!("{}", self.counts);
        }
        self.counts
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_as_hours_minutes_seconds() {
        assert_eq!(clock(6.2), "6s");
        assert_eq!(clock(245.0), "4m05s");
        assert_eq!(clock(3723.0), "1h02m03s");
    }

    #[test]
    fn progress_line_shows_the_total_once_known() {
        let mut p = Progress::new(false, true);
        p.add(3, 1, 2);
        assert!(p.line().starts_with("6 images"), "{}", p.line());
        p.total().store(12, Ordering::Relaxed);
        assert!(
            p.line().starts_with("6/12 [##########----------]"),
            "{}",
            p.line()
        );
        assert!(p.line().contains("(1 failed, 2 skipped)"));
    }
}
