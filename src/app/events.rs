//! What the background threads sent, applied to the app's state once a frame: file replies
//! (listings, thumbnails, viewer images), engine events (job progress, results, sweeps) and the
//! answers of dialogs and model loading.

use super::{BatchwiseApp, DialogMemory, FileReply, Item, Picked, WorkerEvent, take_some};
use crate::job::{ItemStatus, JobEvent};

impl BatchwiseApp {
    /// Applies everything the background threads sent since the last frame.
    pub(super) fn drain_events(&mut self, ctx: &egui::Context) {
        for reply in take_some(&self.files.replies, ctx) {
            self.on_file_reply(ctx, reply);
        }
        for event in take_some(&self.engine.events, ctx) {
            self.on_worker_event(event);
        }
        for p in take_some(&self.picked, ctx) {
            match p {
                Picked::Files(files) => {
                    if let Some(first) = files.first() {
                        DialogMemory::remember(&mut self.dialogs.memory.inputs, first);
                    }
                    self.add_paths(files);
                }
                Picked::OutputDir(dir) => self.settings.output_dir = Some(dir),
                Picked::NoDialog(kind) => self.no_dialog(kind),
                Picked::Model(Ok(model)) => {
                    let path = std::path::Path::new(&model.id);
                    if path.is_file() {
                        DialogMemory::remember(&mut self.dialogs.memory.models, path);
                    }
                    // A step of the chosen chain keeps the chain; another file is chosen.
                    if !self.model_steps().contains(&model.id) {
                        self.settings.model = model.id.clone();
                    }
                    self.message = None;
                    self.user_models.retain(|m| m.id != model.id);
                    self.user_models.push(model);
                }
                Picked::Model(Err(e)) => self.message = Some(e),
                Picked::Preset(reply) => self.on_preset(reply, ctx),
                Picked::ModelsDir(dir) => {
                    self.settings.models_dir = Some(dir);
                    self.scan_models_folder(ctx);
                }
                Picked::ModelsFolder(dir, read) => self.on_models_folder(dir, read),
            }
        }
    }

    /// What the file thread (or the start-up thread) sent.
    fn on_file_reply(&mut self, ctx: &egui::Context, reply: FileReply) {
        match reply {
            FileReply::Added { files, folders } => {
                log::info!(
                    "added {} file(s) from {} folder(s)",
                    files.len(),
                    folders.len()
                );
                for folder in folders {
                    if !self.roots.contains(&folder) {
                        self.roots.push(folder);
                    }
                }
                for path in files {
                    if self.items.iter().any(|i| i.path == path) {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    self.files.thumbnail(id << 1, path.clone());
                    self.items.push(Item {
                        id,
                        path,
                        status: ItemStatus::Queued,
                        error: None,
                        output: None,
                        result: None,
                        tiles: None,
                        thumb: None,
                        output_thumb: None,
                    });
                }
            }
            FileReply::Adapters(list) => self.adapters = Some(list),
            FileReply::Error(e) => self.message = Some(e),
            FileReply::View { id, image } => {
                let (item_id, is_output) = (id >> 1, id & 1 == 1);
                if let (Some(v), Some(image)) =
                    (self.viewer.as_mut().filter(|v| v.item == item_id), image)
                {
                    let tex =
                        ctx.load_texture(format!("view {id}"), image, egui::TextureOptions::LINEAR);
                    if is_output {
                        v.after = Some(tex);
                    } else {
                        v.before = Some(tex);
                    }
                }
            }
            FileReply::ModelInfo(id, info) => {
                self.model_infos.insert(id, info);
            }
            FileReply::Thumbnail { id, image } => {
                // Thumbnail ids are the item id shifted left, with the low bit set for outputs.
                let (item_id, is_output) = (id >> 1, id & 1 == 1);
                if let (Some(item), Some(image)) =
                    (self.items.iter_mut().find(|i| i.id == item_id), image)
                {
                    let tex = ctx.load_texture(
                        format!("thumb {id}"),
                        image,
                        egui::TextureOptions::LINEAR,
                    );
                    if is_output {
                        item.output_thumb = Some(tex);
                    } else {
                        item.thumb = Some(tex);
                    }
                }
            }
        }
    }

    /// What the engine thread sent.
    fn on_worker_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::EngineReady { adapter, ledger } => {
                self.adapter = Some(adapter);
                self.ledger = Some(ledger);
            }
            WorkerEvent::Error(e) => self.message = Some(e),
            WorkerEvent::Job(JobEvent::Result { index, result }) => {
                if let Some(item) = self.items.get_mut(index) {
                    item.result = Some(result);
                }
            }
            WorkerEvent::TuneRow(row) => {
                if let Some(t) = &mut self.tuning {
                    t.rows.push(row);
                }
            }
            WorkerEvent::TuneDone(result) => {
                if let Some(t) = &mut self.tuning {
                    t.finished = true;
                    t.error = result.err();
                }
            }
            WorkerEvent::Idle => {
                self.running = false;
                self.progress.finished_secs =
                    self.progress.started.map(|s| s.elapsed().as_secs_f64());
            }
            WorkerEvent::Job(JobEvent::Started {
                batch_size,
                tile_size,
                ..
            }) => {
                self.progress.batch_size = batch_size;
                self.progress.tile_size = tile_size;
            }
            WorkerEvent::Job(JobEvent::Item {
                index,
                status,
                output,
                error,
            }) => {
                if let Some(item) = self.items.get_mut(index) {
                    item.status = status;
                    item.error = error;
                    item.tiles = None;
                    if let Some(out) = &output {
                        self.files.thumbnail((item.id << 1) | 1, out.clone());
                    }
                    item.output = output;
                }
            }
            WorkerEvent::Job(JobEvent::Tiles { index, done, total }) => {
                if let Some(item) = self.items.get_mut(index) {
                    item.tiles = Some((done, total));
                }
            }
            WorkerEvent::Job(JobEvent::Progress {
                done,
                failed,
                total,
                partial_items,
                items_per_sec,
                batch_size,
                budget_bytes,
                device_memory,
                ..
            }) => {
                self.progress.done = done;
                self.progress.failed = failed;
                self.progress.total = total;
                self.progress.partial_items = partial_items;
                self.progress.items_per_sec = items_per_sec;
                self.progress.batch_size = batch_size;
                self.progress.budget_bytes = budget_bytes;
                self.progress.device_memory = device_memory;
            }
            WorkerEvent::Job(JobEvent::Retry { batch_size, reason }) => {
                self.progress.batch_size = batch_size;
                self.message = Some(format!("{reason}; retrying in batches of {batch_size}"));
            }
            WorkerEvent::Job(JobEvent::Finished(summary)) => {
                log::info!(
                    "job finished: {} done, {} failed of {}",
                    summary.done,
                    summary.failed,
                    summary.total
                );
                self.progress.done = summary.done;
                self.progress.failed = summary.failed;
                self.progress.partial_items = 0.0;
                self.progress.items_per_sec = summary.items_per_sec;
            }
        }
    }
}
