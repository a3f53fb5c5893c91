//! Tune: a sweep over batch sizes on the current inputs, plotted, with the best one a click away.

use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

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

impl Tuning {
    /// The batch size with the most items per second (the smaller one on a tie).
    pub fn best(&self) -> Option<&BenchRow> {
        self.rows.iter().max_by(|a, b| {
            a.compute_items_per_sec
                .total_cmp(&b.compute_items_per_sec)
                .then(b.batch_size.cmp(&a.batch_size))
        })
    }
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
        let error = self
            .engine
            .tune(model, setup, self.settings.adapter_choice())
            .err();
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
                        .on_hover_text("the most items per second; the batch size stops being Auto")
                        .clicked()
                    {
                        apply = Some(b);
                    }
                }
                let series = |f: &dyn Fn(&BenchRow) -> f64| -> Vec<[f64; 2]> {
                    tuning
                        .rows
                        .iter()
                        .map(|r| [r.batch_size as f64, f(r)])
                        .collect()
                };
                let speed = series(&|r| r.compute_items_per_sec);
                let memory = series(&|r| mib(r.peak_gpu_bytes));
                let height = 150.0;
                Plot::new("tune items per second")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("batch size")
                    .y_axis_label("items/s")
                    .allow_scroll(false)
                    .show(ui, |plot| {
                        plot.line(Line::new("items/s", PlotPoints::from(speed.clone())));
                        plot.points(Points::new("", PlotPoints::from(speed.clone())).radius(3.0));
                        if let Some(b) = best.and_then(|b| speed.iter().find(|p| p[0] == b as f64))
                        {
                            plot.points(
                                Points::new("best", PlotPoints::from(vec![*b]))
                                    .radius(7.0)
                                    .color(egui::Color32::from_rgb(60, 170, 90)),
                            );
                        }
                    });
                Plot::new("tune memory")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("batch size")
                    .y_axis_label("MiB")
                    .allow_scroll(false)
                    .show(ui, |plot| {
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
