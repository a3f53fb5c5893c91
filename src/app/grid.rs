//! The grid of items: each cell its thumbnail (the output's once done), its name and its state,
//! with the share of its tiles done while it runs. Every cell is one button to assistive
//! technology (AccessKit), named by its file and state.

use super::{BatchwiseApp, Item, files};
use crate::job::ItemStatus;

impl BatchwiseApp {
    pub(super) fn grid_ui(&mut self, ui: &mut egui::Ui) {
        if self.items.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label("Drop images or folders here, or use 'Add images...'");
            });
            return;
        }
        let cell = files::THUMB_PX as f32 + 8.0 + ui.spacing().item_spacing.x;
        let columns = ((ui.available_width() / cell).floor() as usize).max(1);
        let mut remove = None;
        let mut view = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for row in self.items.chunks(columns) {
                ui.horizontal_top(|ui| {
                    for item in row {
                        let response = item_ui(ui, item);
                        if response.clicked() {
                            view = Some(item.id);
                        }
                        response.context_menu(|ui| {
                            if ui.button("View").clicked() {
                                view = Some(item.id);
                            }
                            if ui
                                .add_enabled(!self.running, egui::Button::new("Remove"))
                                .clicked()
                            {
                                remove = Some(item.id);
                            }
                        });
                    }
                });
                ui.add_space(4.0);
            }
        });
        if let Some(id) = remove {
            self.remove_item(id);
        }
        if let Some(id) = view {
            self.open_viewer(id);
        }
    }
}

/// An item's state in words: "queued", "running 37%" (its tiles landed), "done", "failed".
pub fn state_text(item: &Item) -> String {
    let status = format!("{:?}", item.status).to_lowercase();
    match item.tiles {
        Some((done, total)) if item.status == ItemStatus::Running && total > 0 => {
            format!("{status} {}%", done * 100 / total)
        }
        _ => status,
    }
}

/// What a screen reader says for a cell: the file and its state ("a.png, done").
pub fn cell_label(item: &Item) -> String {
    format!("{}, {}", file_name(item), state_text(item))
}

fn file_name(item: &Item) -> String {
    item.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn status_color(ui: &egui::Ui, status: ItemStatus) -> egui::Color32 {
    match status {
        ItemStatus::Queued => ui.visuals().weak_text_color(),
        ItemStatus::Running => ui.visuals().hyperlink_color,
        ItemStatus::Done => egui::Color32::from_rgb(60, 170, 90),
        ItemStatus::Failed => ui.visuals().error_fg_color,
        ItemStatus::Skipped => ui.visuals().warn_fg_color,
    }
}

fn item_ui(ui: &mut egui::Ui, item: &Item) -> egui::Response {
    let size = files::THUMB_PX as f32;
    // One button to assistive technology, named by the file and its state; right-click opens the
    // item's menu.
    let cell = egui::UiBuilder::new()
        .layout(egui::Layout::top_down(egui::Align::Min))
        .sense(egui::Sense::click())
        .accessibility_role(egui::accesskit::Role::Button)
        .accessibility_label(cell_label(item));
    let response = ui
        .scope_builder(cell, |ui| {
            ui.set_width(size + 8.0);
            let thumb = item.output_thumb.as_ref().or(item.thumb.as_ref());
            let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
            match thumb {
                Some(t) => {
                    let fit = t.size_vec2() * (size / t.size_vec2().max_elem());
                    let r = egui::Rect::from_center_size(rect.center(), fit);
                    egui::Image::new(t).paint_at(ui, r);
                }
                None => {
                    ui.painter()
                        .rect_filled(rect, 4.0, ui.visuals().faint_bg_color);
                }
            }
            ui.add(
                egui::Label::new(egui::RichText::new(file_name(item)).small())
                    .truncate()
                    .selectable(false),
            );
            ui.add(
                egui::Label::new(
                    egui::RichText::new(state_text(item))
                        .small()
                        .color(status_color(ui, item.status)),
                )
                .selectable(false),
            );
        })
        .response;
    let hover = match (&item.error, &item.output) {
        (Some(e), _) => e.clone(),
        (None, Some(o)) => format!("output: {}", o.display()),
        (None, None) => item.path.display().to_string(),
    };
    response.on_hover_text(hover)
}
