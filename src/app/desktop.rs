//! The app among the desktop's windows: its icon, and a title that shows a job's progress (in the
//! task bar and the window switcher while the window is hidden behind others).

use std::sync::Arc;

use super::BatchwiseApp;
use crate::job::ItemStatus;

/// The window icon (drawn by `assets/make_icon.py`).
const ICON_PNG: &[u8] = include_bytes!("../../assets/icon.png");

/// The window icon, decoded; None if it cannot be (the window then has the platform's default).
pub fn icon() -> Option<Arc<egui::IconData>> {
    eframe::icon_data::from_png_bytes(ICON_PNG)
        .ok()
        .map(Arc::new)
}

/// Items finished (done or failed) and the job's share finished, counting items in progress by
/// the share of their tiles landed: (finished, total, fraction from 0 to 1).
pub fn finished_share(app: &BatchwiseApp) -> (usize, usize, f64) {
    let total = app.progress.total;
    let finished = app
        .items
        .iter()
        .filter(|i| matches!(i.status, ItemStatus::Done | ItemStatus::Failed))
        .count();
    let fraction = if total == 0 {
        0.0
    } else {
        ((finished as f64 + app.progress.partial_items) / total as f64).min(1.0)
    };
    (finished, total, fraction)
}

impl BatchwiseApp {
    /// "batchwise", and while a job runs its progress: "batchwise — 12/40 (30%)".
    pub fn window_title(&self) -> String {
        if !self.running {
            return "batchwise".to_owned();
        }
        let (finished, total, fraction) = finished_share(self);
        let paused = if self.engine.is_paused() {
            ", paused"
        } else {
            ""
        };
        // 100% only once every item is finished (the last ones may still be written).
        let mut percent = (fraction * 100.0).floor();
        if finished < total {
            percent = percent.min(99.0);
        }
        format!("batchwise — {finished}/{total} ({percent:.0}%){paused}")
    }

    /// Tells the window its title when it changed.
    pub(super) fn update_title(&mut self, ctx: &egui::Context) {
        let title = self.window_title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The committed icon decodes, square and large enough for a task bar.
    #[test]
    fn the_icon_decodes() {
        let icon = super::icon().expect("assets/icon.png decodes");
        assert_eq!((icon.width, icon.height), (128, 128));
        assert_eq!(icon.rgba.len(), 128 * 128 * 4);
        // Not blank: the tiles are drawn.
        assert!(icon.rgba.chunks(4).any(|p| p[3] == 255 && p[1] > 150));
    }
}
