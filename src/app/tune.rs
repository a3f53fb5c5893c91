//! Tune: a sweep over batch sizes on the current inputs, plotted, with the best one a click away.

use egui_plot::{GridInput, GridMark, Legend, Line, Plot, PlotPoints, Points};

use crate::bench::{BenchRow, BenchSetup};

use super::{BatchwiseApp, mib};

/// Batch sizes a sweep tries, while a batch still has tiles to fill.
pub const TUNE_BATCH_SIZES: &[u32] = &[1, 2, 4, 8, 16, 32, 64];

/// The images a sweep measures on: the first ones of the queue.
pub const TUNE_IMAGES: usize = 16;

/// A sweep running or finished.
#[derive(Default)]
pub struct Tuning {
    pub rows: Vec<BenchRow>,
    pub finished: bool,
    pub error: Option<String>,
    /// The window is shown.
    pub open: bool,
    /// The tile size measured; None for models that take whole images.
    pub tile: Option<u32>,
}

/// A batch size whose items/s are within this share of the top one is as good as the top: the
/// measurement is noisy by more than that, and a smaller batch holds less GPU memory and gives
/// its first results sooner.
pub const BEST_WITHIN: f64 = 0.05;

impl Tuning {
    /// The best batch size: see [`best_row`].
    pub fn best(&self) -> Option<&BenchRow> {
        best_row(&self.rows)
    }
}

/// The smallest batch size within [`BEST_WITHIN`] of the most items per second.
pub fn best_row(rows: &[BenchRow]) -> Option<&BenchRow> {
    let top = rows
        .iter()
        .map(|r| r.compute_items_per_sec)
        .max_by(f64::total_cmp)?;
    rows.iter()
        .filter(|r| r.compute_items_per_sec >= top * (1.0 - BEST_WITHIN))
        .min_by_key(|r| r.batch_size)
}

/// Where a batch size stands on the plots' axis.
fn batch_x(batch_size: u32) -> f64 {
    f64::from(batch_size).log2()
}

/// The axis label at `x`: the batch size at each power of two, nothing between.
fn batch_axis_label(x: f64) -> String {
    if x >= 0.0 && x.fract() == 0.0 {
        format!("{:.0}", x.exp2())
    } else {
        String::new()
    }
}

/// A plot over batch sizes on a log2 axis (1, 2, 4, ... equally spaced), one grid line and one
/// label per power of two.
fn batch_plot(id: &str, y_label: &str) -> Plot<'static> {
    let powers = |input: GridInput| -> Vec<GridMark> {
        let (lo, hi) = input.bounds;
        let (lo, hi) = (lo.ceil().max(-1.0) as i32, hi.floor().min(16.0) as i32);
        (lo..=hi)
            .map(|v| GridMark {
                value: f64::from(v),
                step_size: 1.0,
            })
            .collect()
    };
    Plot::new(id)
        .height(150.0)
        .legend(Legend::default())
        .x_axis_label("batch size (log2 scale)")
        .y_axis_label(y_label.to_owned())
        .x_grid_spacer(powers)
        // From zero, so that 5% looks like 5%.
        .include_y(0.0)
        .x_axis_formatter(|mark, _| batch_axis_label(mark.value))
        .show_x(false)
        .allow_scroll(false)
}

impl BatchwiseApp {
    /// Starts a sweep on the engine thread over the first images of the queue.
    pub fn start_tune(&mut self) {
        if self.running || self.items.is_empty() {
            return;
        }
        let model = match self.model_choice() {
            Ok(m) => m,
            Err(e) => {
                self.message = Some(e);
                return;
            }
        };
        // A model lowered at one size takes tiles of exactly that size.
        let tile = match &model.model.static_shapes {
            Some(shapes) => shapes[0].h.saturating_sub(2 * model.spec.context).max(1),
            None => self.tune_tile_size(),
        };
        let setup = BenchSetup {
            batch_sizes: TUNE_BATCH_SIZES.to_vec(),
            size: 128,
            count: 1,
            tile_size: Some(tile),
            precision: self.settings.precision(),
            inputs: None,
            files: self
                .items
                .iter()
                .take(TUNE_IMAGES)
                .map(|i| i.path.clone())
                .collect(),
            profile: false,
        };
        let tile = (model.input_size == 0).then_some(tile);
        // An engine that cannot take the sweep ends it at once, with the reason in its window.
        let error = self.engine.tune(model, setup, self.settings.device()).err();
        self.tuning = Some(Tuning {
            open: true,
            tile,
            finished: error.is_some(),
            error,
            ..Default::default()
        });
    }

    /// The tile size a sweep uses: the chosen one, else 128 px (the Auto tile on most GPUs).
    fn tune_tile_size(&self) -> u32 {
        match self.settings.tile_size {
            0 => 128,
            t => t,
        }
    }

    pub(super) fn tune_window(&mut self, ctx: &egui::Context) {
        let Some(tuning) = &mut self.tuning else {
            return;
        };
        let mut open = tuning.open;
        let mut apply = None;
        egui::Window::new("Tune batch size")
            .open(&mut open)
            .default_size([520.0, 560.0])
            .vscroll(true)
            .show(ctx, |ui| {
                ui.label(format!(
                    "Compute only, on the first {} images of the queue{}.",
                    self.items.len().min(TUNE_IMAGES),
                    match tuning.tile {
                        Some(t) => format!(", at {t} px tiles"),
                        None => ", each fitted to the model's input".to_owned(),
                    }
                ));
                if !tuning.finished {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(format!(
                            "measuring... {} batch sizes done",
                            tuning.rows.len()
                        ));
                    });
                }
                if let Some(e) = &tuning.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                let best = tuning.best().map(|r| r.batch_size);
                if let Some(b) = best {
                    let button = egui::Button::new(format!("Apply batch size {b}"));
                    if ui
                        .add_enabled(tuning.finished, button)
                        .on_hover_text(
                            "the smallest batch within 5% of the most items per second; the \
                             batch size stops being Auto",
                        )
                        .clicked()
                    {
                        apply = Some(b);
                    }
                }
                let series = |f: &dyn Fn(&BenchRow) -> f64| -> Vec<[f64; 2]> {
                    tuning
                        .rows
                        .iter()
                        .map(|r| [batch_x(r.batch_size), f(r)])
                        .collect()
                };
                let speed = series(&|r| r.compute_items_per_sec);
                let memory = series(&|r| mib(r.peak_gpu_bytes));
                batch_plot("tune items per second", "items/s").show(ui, |plot| {
                    plot.line(Line::new("items/s", PlotPoints::from(speed.clone())));
                    plot.points(Points::new("", PlotPoints::from(speed.clone())).radius(3.0));
                    let best_x = best.map(batch_x);
                    if let Some(b) = best_x.and_then(|x| speed.iter().find(|p| p[0] == x)) {
                        plot.points(
                            Points::new("best", PlotPoints::from(vec![*b]))
                                .radius(7.0)
                                .color(egui::Color32::from_rgb(60, 170, 90)),
                        );
                    }
                });
                batch_plot("tune memory", "MiB").show(ui, |plot| {
                    plot.line(Line::new(
                        "peak GPU memory (MiB)",
                        PlotPoints::from(memory.clone()),
                    ));
                    plot.points(Points::new("", PlotPoints::from(memory)).radius(3.0));
                });
                egui::Grid::new("tune rows").striped(true).show(ui, |ui| {
                    ui.strong("batch");
                    ui.strong("items/s");
                    ui.strong("peak MiB");
                    ui.end_row();
                    for r in &tuning.rows {
                        ui.label(r.batch_size.to_string());
                        ui.label(format!("{:.3}", r.compute_items_per_sec));
                        ui.label(format!("{:.1}", mib(r.peak_gpu_bytes)));
                        ui.end_row();
                    }
                });
            });
        tuning.open = open;
        if let Some(b) = apply {
            self.settings.batch_size = b;
            self.settings.batch_auto = false;
            tuning.open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(batch_size: u32, compute_items_per_sec: f64) -> BenchRow {
        BenchRow {
            batch_size,
            items_per_sec: 0.0,
            compute_items_per_sec,
            host_ms_per_batch: None,
            gpu_ms_per_batch: None,
            peak_gpu_bytes: 0,
            planned_gpu_bytes: 0,
            batches: 1,
            dispatches_per_batch: 1,
            gflops: 0.0,
            separate_steps_items_per_sec: None,
            step_by_step: false,
        }
    }

    /// Best is the smallest batch within 5% of the top items/s, not the top itself.
    #[test]
    fn best_is_the_smallest_batch_within_five_percent_of_the_top() {
        let rows = [
            row(1, 40.0),
            row(2, 70.0),
            row(4, 96.0),
            row(8, 100.0),
            row(16, 99.0),
        ];
        assert_eq!(best_row(&rows).unwrap().batch_size, 4);
        // 94.9 is more than 5% below 100: the top batch wins.
        let rows = [row(1, 40.0), row(4, 94.9), row(8, 100.0)];
        assert_eq!(best_row(&rows).unwrap().batch_size, 8);
        // Exactly 5% below counts.
        let rows = [row(2, 95.0), row(8, 100.0)];
        assert_eq!(best_row(&rows).unwrap().batch_size, 2);
        // Order of the rows does not matter; one row is its own best; none gives none.
        let rows = [row(16, 100.0), row(8, 99.0), row(1, 10.0)];
        assert_eq!(best_row(&rows).unwrap().batch_size, 8);
        assert_eq!(best_row(&[row(32, 5.0)]).unwrap().batch_size, 32);
        assert!(best_row(&[]).is_none());
    }

    /// The sweep's batch sizes stand one step apart on the axis, labelled by their size.
    #[test]
    fn the_batch_axis_is_log2_with_a_label_per_power_of_two() {
        let xs: Vec<f64> = TUNE_BATCH_SIZES.iter().map(|&b| batch_x(b)).collect();
        assert_eq!(xs, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let labels: Vec<String> = xs.iter().map(|&x| batch_axis_label(x)).collect();
        assert_eq!(labels, ["1", "2", "4", "8", "16", "32", "64"]);
        assert_eq!(batch_axis_label(2.5), "");
        assert_eq!(batch_axis_label(-1.0), "");
    }
}
