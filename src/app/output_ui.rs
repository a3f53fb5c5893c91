//! The export panel's encoding settings: quality (JPEG, lossy WebP), WebP lossless or lossy, PNG
//! compression, and the output scale of image-to-image models.

use super::settings::Settings;
use crate::job::OutputFormat;
use crate::job::export::encode::PngCompression;

/// A format's name in the format combo.
pub(super) fn format_name(format: OutputFormat) -> String {
    match format {
        OutputFormat::Same => "Same as input".into(),
        f => format!("{f:?}").to_uppercase(),
    }
}

/// Quality, WebP mode and PNG compression where the format uses them (`Same` may write any),
/// and the output scale where the model is image-to-image (`model_scale`).
pub(super) fn encoding_ui(settings: &mut Settings, ui: &mut egui::Ui, model_scale: Option<u32>) {
    let format = settings.format;
    let any = format == OutputFormat::Same;
    if any || format == OutputFormat::Webp {
        ui.checkbox(&mut settings.webp_lossless, "WebP lossless")
            .on_hover_text("unchecked: lossy WebP at the quality below");
    }
    let lossy_webp = (any || format == OutputFormat::Webp) && !settings.webp_lossless;
    if any || format == OutputFormat::Jpeg || lossy_webp {
        ui.add(egui::Slider::new(&mut settings.quality, 1..=100).text("Quality"));
    }
    if any || format == OutputFormat::Png {
        ui.horizontal(|ui| {
            let l = ui.label("PNG compression");
            egui::ComboBox::from_id_salt("png_compression")
                .selected_text(png_name(settings.png_compression))
                .show_ui(ui, |ui| {
                    for c in [
                        PngCompression::Fast,
                        PngCompression::Balanced,
                        PngCompression::Best,
                    ] {
                        ui.selectable_value(&mut settings.png_compression, c, png_name(c));
                    }
                })
                .response
                .labelled_by(l.id);
        });
    }
    if let Some(model) = model_scale {
        ui.horizontal(|ui| {
            let mut own = settings.scale <= 0.0;
            ui.checkbox(&mut own, format!("Model's scale ({model}x)"))
                .on_hover_text("unchecked: the output resampled (Lanczos3) to another scale");
            if own {
                settings.scale = 0.0;
            } else {
                if settings.scale <= 0.0 {
                    settings.scale = model as f32;
                }
                ui.add(
                    egui::DragValue::new(&mut settings.scale)
                        .range(0.25..=crate::job::MAX_SCALE)
                        .speed(0.05)
                        .suffix("x"),
                );
            }
        });
    }
}

fn png_name(c: PngCompression) -> String {
    match c {
        PngCompression::Fast => "fast".into(),
        PngCompression::Balanced => "balanced".into(),
        PngCompression::Best => "best".into(),
        PngCompression::Level(n) => format!("level {n}"),
    }
}
