//! Progress bars for training runs (indicatif): loss, learning rate, throughput and ETA;
//! hidden with `--quiet` or when stderr is not a terminal.

use beit::train::{Evaluation, Observer, StepMetrics};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;

/// A training progress bar.
pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    /// A bar on stderr, or none when `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        let quiet = quiet || !std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(Some(0), if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar, quiet }
    }

    /// Print `line` to stdout, out of the bar's way.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    fn note(&self, line: &str) {
        if self.quiet {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Observer for Progress {
    fn start(&mut self, first_step: u64, total_steps: u64) {
        self.bar.set_length(total_steps);
        self.bar.set_position(first_step);
        self.bar.reset_eta();
    }

    fn step(&mut self, m: &StepMetrics, _total: u64) {
        self.bar.set_message(format!("loss {:.4} lr {:.2e} {:.1} img/s", m.loss, m.lr, m.samples_per_sec));
        self.bar.set_position(m.step + 1);
    }

    fn eval(&mut self, e: &Evaluation) {
        let epoch = e.epoch().map_or(String::new(), |e| format!("epoch {e}: "));
        let scores = match e {
            Evaluation::Classification(m) => format!("loss {:.4} top-1 {:.2}% top-5 {:.2}% ({} images)", m.loss, 100.0 * m.top1, 100.0 * m.top5, m.samples),
            Evaluation::Segmentation(m) => format!("mIoU {:.4} pixel accuracy {:.4} ({} images)", m.mean_iou, m.pixel_accuracy, m.samples),
        };
        self.note(&format!("{epoch}eval {scores}"));
    }

    fn warn(&mut self, message: &str) {
        self.note(&format!("warning: {message}"));
    }

    fn checkpoint(&mut self, path: &Path) {
        if !self.quiet {
            self.bar.println(format!("checkpoint {}", path.display()));
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
