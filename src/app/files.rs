//! The file thread: lists dropped folders, decodes thumbnails, lists adapters and reads the
//! built-in models' figures, off the UI thread.

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
    /// The adapters, and what every built-in model needs (parsing them takes a moment).
    Startup,
    /// An image at viewer size ([`super::viewer::VIEW_PX`]), for the viewer.
    View { id: u64, path: PathBuf },
}

pub enum FileReply {
    /// The image files found, and which of the paths were folders.
    Added {
        files: Vec<PathBuf>,
        folders: Vec<PathBuf>,
    },
    Thumbnail {
        id: u64,
        image: Option<egui::ColorImage>,
    },
    Adapters(Vec<crate::gpu::AdapterSummary>),
    View {
        id: u64,
        image: Option<egui::ColorImage>,
    },
    ModelInfo(String, crate::builtin::ModelInfo),
}

pub struct FileWorker {
    requests: Sender<FileRequest>,
    pub replies: Receiver<FileReply>,
}

impl FileWorker {
    pub fn spawn(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<FileRequest>();
        let (rep_tx, rep_rx) = std::sync::mpsc::channel::<FileReply>();
        let wake = std::sync::Arc::new(wake);
        // Sends a reply and wakes the UI; false once the app is gone.
        let sender = move || {
            let (rep_tx, wake) = (rep_tx.clone(), wake.clone());
            move |reply| {
                let sent = rep_tx.send(reply).is_ok();
                wake();
                sent
            }
        };
        // The adapter list and the built-in models' figures take a few seconds: on a thread of
        // their own, so that dropped files are listed meanwhile.
        let startup = sender();
        let send = sender();
        std::thread::Builder::new()
            .name("batchwise-files".into())
            .spawn(move || {
                for request in req_rx {
                    let sent = match request {
                        // Canonical paths: the same file reached another way is a duplicate
                        // the app can see (and the job's item indices stay the app's).
                        FileRequest::Add(paths) => send(FileReply::Added {
                            files: job::expand_inputs(&paths)
                                .into_iter()
                                .map(|p| p.canonicalize().unwrap_or(p))
                                .collect(),
                            folders: paths
                                .into_iter()
                                .filter(|p| p.is_dir())
                                .map(|p| p.canonicalize().unwrap_or(p))
                                .collect(),
                        }),
                        FileRequest::Thumbnail { id, path } => send(FileReply::Thumbnail {
                            id,
                            image: thumbnail(&path, THUMB_PX),
                        }),
                        FileRequest::View { id, path } => send(FileReply::View {
                            id,
                            image: thumbnail(&path, super::viewer::VIEW_PX),
                        }),
                        FileRequest::Startup => {
                            let send = startup.clone();
                            std::thread::Builder::new()
                                .name("batchwise-startup".into())
                                .spawn(move || {
                                    send(FileReply::Adapters(crate::gpu::list_adapters()))
                                        && crate::builtin::BUILTINS.iter().all(|m| {
                                            match m.choice().and_then(|c| c.info()) {
                                                Ok(info) => send(FileReply::ModelInfo(
                                                    m.id.to_owned(),
                                                    info,
                                                )),
                                                Err(_) => true,
                                            }
                                        })
                                })
                                .is_ok()
                        }
                    };
                    if !sent {
                        break;
                    }
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

/// The image at most `px` on its longer side (smaller images as they are).
fn thumbnail(path: &std::path::Path, px: u32) -> Option<egui::ColorImage> {
    let img = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .decode()
        .ok()?;
    let t = if img.width().max(img.height()) > px {
        img.thumbnail(px, px).to_rgba8()
    } else {
        img.to_rgba8()
    };
    Some(egui::ColorImage::from_rgba_unmultiplied(
        [t.width() as usize, t.height() as usize],
        t.as_raw(),
    ))
}
