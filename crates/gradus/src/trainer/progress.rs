//! How progress is shown: one line per epoch, or a live bar on a terminal.

use super::EpochRecord;

pub(crate) fn describe(r: &EpochRecord, epochs: usize) -> String {
    let mut s = format!("epoch {:>3}/{epochs}  loss {:.4}", r.epoch, r.train_loss);
    let mut push = |label: &str, v: Option<f64>, percent: bool| {
        if let Some(v) = v {
            if percent {
                s.push_str(&format!("  {label} {:.2}%", 100.0 * v));
            } else {
                s.push_str(&format!("  {label} {v:.4}"));
            }
        }
    };
    push("acc", r.train_accuracy, true);
    push("mae", r.train_mae, false);
    push("rmse", r.train_rmse, false);
    push("val_loss", r.val_loss, false);
    push("val_acc", r.val_accuracy, true);
    push("val_mae", r.val_mae, false);
    push("val_rmse", r.val_rmse, false);
    for (name, v) in &r.extra {
        s.push_str(&format!("  {name} {v:.4}"));
    }
    s.push_str(&format!(
        "  lr {:.3e}  {:.0} samples/s  {:.1}s",
        r.lr, r.samples_per_sec, r.wall_time_secs
    ));
    if r.skipped_batches > 0 {
        s.push_str(&format!("  ({} batches skipped)", r.skipped_batches));
    }
    s
}

pub(crate) fn progress_bar(len: u64, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}
