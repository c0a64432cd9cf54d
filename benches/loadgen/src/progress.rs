//! The optional stderr progress bar: shown on a terminal or with `--progress`, hidden otherwise
//! so JSON runs from scripts stay quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting delivered messages; `total` is `None` in duration mode.
pub fn bar(forced: bool, total: Option<u64>, what: &str) -> ProgressBar {
    if !(forced || std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = match total {
        Some(_) => "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec})",
        None => "{prefix} [{elapsed_precise}] {spinner} {human_pos} ({per_sec})",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar
}
