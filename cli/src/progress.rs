//! Progress on stderr: an indicatif bar on a terminal, plain periodic lines otherwise (CI
//! logs, pipes), nothing when hidden.
//!
//! The bar being drawn is also registered here so log lines can be written around it
//! ([`LogWriter`]) instead of through it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An animated bar (stderr is a terminal).
    Bar,
    /// A plain line every few seconds.
    Lines,
    /// Nothing.
    Hidden,
}

impl Mode {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// How often the plain-lines mode prints.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// The bar on screen, if any, so log lines can suspend it while they print.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active_bar() -> Option<ProgressBar> {
    ACTIVE_BAR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

fn set_active_bar(bar: Option<ProgressBar>) {
    *ACTIVE_BAR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = bar;
}

/// One progress display: `position` of `len`, with a message of counts.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    len: u64,
    mode: Mode,
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    last_text: String,
}

impl Progress {
    /// A display for `len` units of work, labelled e.g. `jobs`.
    pub fn new(mode: Mode, label: &'static str, len: u64) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {prefix} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_prefix(label);
            bar.enable_steady_tick(Duration::from_millis(120));
            set_active_bar(Some(bar.clone()));
            bar
        });
        Self {
            label,
            len,
            mode,
            bar,
            last_line: None,
            last_text: String::new(),
        }
    }

    /// Shows `position` of the total and `message`.
    pub fn update(&mut self, position: u64, message: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.set_position(position);
                bar.set_message(message.to_string());
            }
            (None, Mode::Lines) => {
                let due = self.last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY);
                let text = format!("{}: {position}/{} {message}", self.label, self.len);
                if due && text != self.last_text {
                    eprintln!("{text}");
                    self.last_line = Some(Instant::now());
                    self.last_text = text;
                }
            }
            (None, _) => {}
        }
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn note(&self, text: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.suspend(|| eprintln!("{text}")),
            (None, Mode::Lines) => eprintln!("{text}"),
            (None, _) => {}
        }
    }

    /// Takes the display off the screen.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            set_active_bar(None);
            bar.finish_and_clear();
        }
    }
}

/// A log destination that writes to stderr around the progress bar, so a warning during
/// `jobfleet dev` does not tear the bar apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match active_bar() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_line_modes_draw_no_bar() {
        let mut p = Progress::new(Mode::Hidden, "jobs", 10);
        p.update(3, "completed 3");
        assert!(p.bar.is_none());
        p.finish();
        let mut p = Progress::new(Mode::Lines, "jobs", 10);
        p.update(5, "completed 5");
        assert_eq!(p.last_text, "jobs: 5/10 completed 5");
        // Within LINE_EVERY of the last line nothing new is printed.
        p.update(6, "completed 6");
        assert_eq!(p.last_text, "jobs: 5/10 completed 5");
        p.finish();
        assert!(active_bar().is_none());
    }
}
