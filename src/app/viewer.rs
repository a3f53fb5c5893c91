//! The viewer: one item before and after, split by a slider, with zoom and pan; labels, face
//! boxes and cut-outs drawn over it.

use super::{BatchwiseApp, ImageRequest};
use crate::job::ItemResult;

/// Largest edge of the images the viewer shows (bigger ones are downscaled for display).
pub const VIEW_PX: u32 = 2048;

/// The item the viewer shows, and how.
pub struct Viewer {
    pub item: u64,
    /// Input and output at display size, once the file thread has read them.
    pub before: Option<egui::TextureHandle>,
    pub after: Option<egui::TextureHandle>,
    /// Where the split is, from 0 (all after) to 1 (all before).
    pub split: f32,
    /// 1: the image fits the view.
    pub zoom: f32,
    /// Offset of the image's centre from the view's centre, in points.
    pub pan: egui::Vec2,
}

impl BatchwiseApp {
    /// Opens the viewer on an item and asks the file thread for its images.
    pub fn open_viewer(&mut self, id: u64) {
        let Some(item) = self.items.iter().find(|i| i.id == id) else {
            return;
        };
        let mut images = vec![ImageRequest {
            id: id << 1,
            path: item.path.clone(),
        }];
        if let Some(out) = item.output.as_ref().filter(|o| is_image(o)) {
            images.push(ImageRequest {
                id: (id << 1) | 1,
                path: out.clone(),
            });
        }
        self.files.view(images);
        self.viewer = Some(Viewer {
            item: id,
            before: None,
            after: None,
            split: 0.5,
            zoom: 1.0,
            pan: egui::Vec2::ZERO,
        });
    }

    /// The viewer's keys: Left / Right show the previous / next item, Delete removes the item
    /// shown from the queue (not while a job runs) and shows the next one.
    fn viewer_keys(&mut self, ctx: &egui::Context) {
        use egui::{Key, Modifiers};
        let Some(current) = self.viewer.as_ref().map(|v| v.item) else {
            return;
        };
        let Some(pos) = self.items.iter().position(|i| i.id == current) else {
            return;
        };
        if ctx.text_edit_focused() {
            return;
        }
        let pressed = |k: Key| ctx.input_mut(|i| i.consume_key(Modifiers::NONE, k));
        let id_at = |p: Option<usize>| p.and_then(|p| self.items.get(p)).map(|i| i.id);
        if pressed(Key::ArrowLeft) {
            if let Some(id) = id_at(pos.checked_sub(1)) {
                self.open_viewer(id);
            }
        } else if pressed(Key::ArrowRight) {
            if let Some(id) = id_at(Some(pos + 1)) {
                self.open_viewer(id);
            }
        } else if pressed(Key::Delete) {
            if self.running {
                self.message = Some("items cannot be removed while a job runs".into());
                return;
            }
            let next = id_at(Some(pos + 1)).or_else(|| id_at(pos.checked_sub(1)));
            self.remove_item(current);
            match next {
                Some(id) => self.open_viewer(id),
                None => self.viewer = None,
            }
        }
    }

    pub(super) fn viewer_window(&mut self, ctx: &egui::Context) {
        self.viewer_keys(ctx);
        let Some(viewer) = &mut self.viewer else {
            return;
        };
        let Some(item) = self.items.iter().find(|i| i.id == viewer.item) else {
            self.viewer = None;
            return;
        };
        let name = item
            .path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let mut open = true;
        egui::Window::new(format!("Viewer: {name}"))
            .id(egui::Id::unique("viewer"))
            .open(&mut open)
            .default_size([820.0, 620.0])
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    ui.add(
                        egui::Slider::new(&mut viewer.split, 0.0..=1.0)
                            .show_value(false)
                            .text("Before | After"),
                    );
                    ui.add(
                        egui::Slider::new(&mut viewer.zoom, 0.1..=16.0)
                            .logarithmic(true)
                            .text("Zoom"),
                    );
                    if ui.button("Fit").clicked() {
                        viewer.zoom = 1.0;
                        viewer.pan = egui::Vec2::ZERO;
                    }
                });
                if let Some(result) = &item.result {
                    result_text_ui(ui, result);
                }
                let size = ui.available_size().max(egui::vec2(64.0, 64.0));
                let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click_and_drag());
                if response.dragged() {
                    viewer.pan += response.drag_delta();
                }
                if response.hovered() {
                    let scroll = ui.input(|i| i.smooth_scroll_delta.y);
                    if scroll != 0.0 {
                        viewer.zoom = (viewer.zoom * (scroll / 200.0).exp()).clamp(0.1, 16.0);
                    }
                }
                let painter = ui.painter_at(rect);
                painter.rect_filled(rect, 0.0, ui.visuals().extreme_bg_color);
                let Some(base) = viewer.before.as_ref().or(viewer.after.as_ref()) else {
                    painter.text(
                        rect.center(),
                        egui::Align2::CENTER_CENTER,
                        "reading...",
                        egui::FontId::proportional(16.0),
                        ui.visuals().weak_text_color(),
                    );
                    return;
                };
                // Both images fill the same rectangle: the output is the input, larger.
                let tex = base.size_vec2();
                let fit = (rect.width() / tex.x).min(rect.height() / tex.y);
                let shown = tex * fit * viewer.zoom;
                let image_rect = egui::Rect::from_center_size(rect.center() + viewer.pan, shown);
                let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                let split_x = image_rect.left() + image_rect.width() * viewer.split;
                if let Some(after) = &viewer.after {
                    checkerboard(&painter, image_rect);
                    painter.image(after.id(), image_rect, uv, egui::Color32::WHITE);
                }
                if let Some(before) = &viewer.before {
                    let left = egui::Rect::from_min_max(
                        image_rect.min,
                        egui::pos2(split_x, image_rect.max.y),
                    );
                    let clip = if viewer.after.is_some() {
                        left
                    } else {
                        image_rect
                    };
                    painter.with_clip_rect(clip.intersect(rect)).image(
                        before.id(),
                        image_rect,
                        uv,
                        egui::Color32::WHITE,
                    );
                }
                if viewer.after.is_some() && viewer.before.is_some() {
                    painter.vline(
                        split_x,
                        image_rect.y_range(),
                        egui::Stroke::new(2.0, egui::Color32::WHITE),
                    );
                }
                if let Some(result) = &item.result {
                    draw_faces(&painter, image_rect, result);
                }
            });
        if !open {
            self.viewer = None;
        }
    }
}

fn is_image(path: &std::path::Path) -> bool {
    crate::job::is_image_name(path)
}

/// Labels with their scores, or what the result holds, above the image.
fn result_text_ui(ui: &mut egui::Ui, result: &ItemResult) {
    match result {
        ItemResult::Labels(labels) => {
            ui.horizontal_wrapped(|ui| {
                for l in labels {
                    ui.label(format!("{} {:.1}%", l.label, l.score * 100.0));
                    ui.separator();
                }
            });
        }
        ItemResult::Embedding(v) => {
            ui.label(format!("embedding of {} values", v.len()));
        }
        ItemResult::Faces { faces, .. } => {
            ui.label(format!("{} face(s)", faces.len()));
        }
        ItemResult::Tensors(outs) => {
            let sizes: Vec<String> = outs.iter().map(|o| o.len().to_string()).collect();
            ui.label(format!("outputs of {} values", sizes.join(", ")));
        }
    }
}

/// Face boxes and keypoints, from image pixels to the screen.
fn draw_faces(painter: &egui::Painter, image_rect: egui::Rect, result: &ItemResult) {
    let ItemResult::Faces {
        size: [w, h],
        faces,
    } = result
    else {
        return;
    };
    let (w, h) = (*w as f32, *h as f32);
    let to_screen = |[x, y]: [f32; 2]| {
        egui::pos2(
            image_rect.left() + x / w * image_rect.width(),
            image_rect.top() + y / h * image_rect.height(),
        )
    };
    let stroke = egui::Stroke::new(2.0, egui::Color32::from_rgb(60, 220, 90));
    for face in faces {
        let [x0, y0, x1, y1] = face.rect;
        let r = egui::Rect::from_two_pos(to_screen([x0, y0]), to_screen([x1, y1]));
        painter.rect_stroke(r, 0.0, stroke, egui::StrokeKind::Outside);
        for &k in &face.keypoints {
            painter.circle_filled(to_screen(k), 3.0, stroke.color);
        }
    }
}

/// A checkerboard under images with transparency (cut-outs).
fn checkerboard(painter: &egui::Painter, rect: egui::Rect) {
    let cell = 12.0;
    let clip = painter.clip_rect().intersect(rect);
    let (light, dark) = (egui::Color32::from_gray(200), egui::Color32::from_gray(150));
    painter.rect_filled(clip, 0.0, light);
    // Only the cells inside the clip, however far the image is zoomed.
    let first = |from: f32, to: f32| ((to - from) / cell).floor().max(0.0) as i64;
    let (col0, row0) = (
        first(rect.left(), clip.left()),
        first(rect.top(), clip.top()),
    );
    let (cols, rows) = (
        (clip.width() / cell).ceil() as i64 + 1,
        (clip.height() / cell).ceil() as i64 + 1,
    );
    for row in row0..row0 + rows {
        for col in col0..col0 + cols {
            if (row + col) % 2 == 1 {
                let min = rect.min + egui::vec2(col as f32 * cell, row as f32 * cell);
                let c = egui::Rect::from_min_size(min, egui::vec2(cell, cell));
                painter.rect_filled(c.intersect(clip), 0.0, dark);
            }
        }
    }
}
