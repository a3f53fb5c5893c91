//! The file thread: lists dropped folders and decodes thumbnails, off the UI thread.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};

use crate::job;

/// Thumbnail edge length in pixels.
pub const THUMB_PX: u32 = 96;

pub enum FileRequest {
    /// Files and folders to add to the queue.
    Add(Vec<PathBuf>),
    /// A thumbnail of this file, for the item with this id.
    Thumbnail { id: u64, path: PathBuf },
}

pub enum FileReply {
    Added(Vec<PathBuf>),
    Thumbnail {
        id: u64,
        image: Option<egui::ColorImage>,
    },
}

pub struct FileWorker {
    requests: Sender<FileRequest>,
    pub replies: Receiver<FileReply>,
}

impl FileWorker {
    pub fn spawn(wake: impl Fn() + Send + 'static) -> Self {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<FileRequest>();
        let (rep_tx, rep_rx) = std::sync::mpsc::channel::<FileReply>();
        std::thread::Builder::new()
            .name("batchwise-files".into())
            .spawn(move || {
                for request in req_rx {
                    let reply = match request {
                        FileRequest::Add(paths) => FileReply::Added(job::expand_inputs(&paths)),
                        FileRequest::Thumbnail { id, path } => FileReply::Thumbnail {
                            id,
                            image: thumbnail(&path),
                        },
                    };
                    if rep_tx.send(reply).is_err() {
                        break;
                    }
                    wake();
                }
            })
            .expect("spawning the file thread");
        Self {
            requests: req_tx,
            replies: rep_rx,
        }
    }

    pub fn send(&self, request: FileRequest) {
        let _ = self.requests.send(request);
    }
}

fn thumbnail(path: &std::path::Path) -> Option<egui::ColorImage> {
    let img = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .decode()
        .ok()?;
    let t = img.thumbnail(THUMB_PX, THUMB_PX).to_rgba8();
    Some(egui::ColorImage::from_rgba_unmultiplied(
        [t.width() as usize, t.height() as usize],
        t.as_raw(),
    ))
}
