//! The file thread: lists dropped folders and decodes viewer images and thumbnails, off the UI
//! thread; a start-up thread of its own lists adapters and reads the built-in models' figures.
//!
//! Requests come on three bounded channels, served by urgency ([`Inbox::next`]): a viewer image
//! first, then listings (and start-up), thumbnails last, so the image the user asked to see is
//! decoded next however many thumbnails wait. The UI never blocks on them: what a full channel
//! cannot take waits in an [`Outbox`] on the UI side for a later frame, and requests nobody wants
//! any more (the viewer moved on, the item was removed) are dropped there before they are sent.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select_biased};

use crate::job;

/// Thumbnail edge length in pixels.
pub const THUMB_PX: u32 = 96;

/// Viewer images in the channel: one viewer opening (its before and after). A later opening
/// waits in the UI's outbox, where it replaces any earlier one still waiting, so at most these
/// two decodes stand before it.
const VIEW_CAPACITY: usize = 2;
/// Listings and start-up: one per drop or dialog, rarely more than one at a time; the outbox
/// keeps any beyond these (a listing is never dropped).
const COMMAND_CAPACITY: usize = 8;
/// Thumbnails in the channel: enough that the file thread never idles between frames (every
/// reply wakes the UI, which refills the channel), few enough that removing items or clearing
/// the queue drops the rest of their thumbnails in the outbox, undecoded.
const THUMB_CAPACITY: usize = 32;
/// Replies waiting for the UI. The UI drains this every frame and every reply wakes it, so the
/// file thread (and the start-up thread) block on a full channel only until the next frame; the
/// bound keeps decoded images (up to 16 MiB at viewer size) from piling up meanwhile.
const REPLY_CAPACITY: usize = 16;

/// An image to decode. `id` is the item's id shifted left, with the low bit set for its output.
pub struct ImageRequest {
    pub id: u64,
    pub path: PathBuf,
}

/// Work for the file thread other than images.
pub enum FileCommand {
    /// Files and folders to add to the queue.
    Add(Vec<PathBuf>),
    /// The adapters, and what every built-in model needs (parsing them takes a moment).
    Startup,
}

/// A request as the file thread serves it, whichever channel it came on.
enum FileRequest {
    /// An image at viewer size ([`super::viewer::VIEW_PX`]).
    View(ImageRequest),
    Command(FileCommand),
    /// An image at thumbnail size ([`THUMB_PX`]).
    Thumbnail(ImageRequest),
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
    /// A thread could not be started.
    Error(String),
}

/// The UI's end of a bounded channel: `try_send` only, so the UI never blocks; what the channel
/// cannot take now waits here, in order, for a later frame.
struct Outbox<T> {
    tx: Sender<T>,
    waiting: VecDeque<T>,
}

impl<T> Outbox<T> {
    fn new(tx: Sender<T>) -> Self {
        Self {
            tx,
            waiting: VecDeque::new(),
        }
    }

    /// Sends now if nothing waits before it, else queues it behind what waits.
    fn push(&mut self, item: T) {
        self.waiting.push_back(item);
        if self.waiting.len() == 1 {
            self.flush(|_| true);
        }
    }

    /// Sends what waits, oldest first, until the channel is full; drops what `wanted` refuses.
    /// Once the thread is gone (it panicked), nothing is kept.
    fn flush(&mut self, wanted: impl Fn(&T) -> bool) {
        while let Some(item) = self.waiting.pop_front() {
            if !wanted(&item) {
                continue;
            }
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    self.waiting.push_front(item);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    log::warn!("the file thread has stopped; dropping its requests");
                    self.waiting.clear();
                }
            }
        }
    }
}

/// The file thread's end: its three request channels.
struct Inbox {
    views: Receiver<ImageRequest>,
    commands: Receiver<FileCommand>,
    thumbs: Receiver<ImageRequest>,
}

impl Inbox {
    /// The next request, blocking until there is one: a viewer image before anything else,
    /// thumbnails only when nothing else waits. None once the app is gone.
    fn next(&self) -> Option<FileRequest> {
        select_biased! {
            recv(self.views) -> r => r.ok().map(FileRequest::View),
            recv(self.commands) -> r => r.ok().map(FileRequest::Command),
            recv(self.thumbs) -> r => r.ok().map(FileRequest::Thumbnail),
        }
    }
}

/// The UI's handle to the file thread.
pub struct FileWorker {
    views: Outbox<ImageRequest>,
    commands: Outbox<FileCommand>,
    thumbs: Outbox<ImageRequest>,
    pub replies: Receiver<FileReply>,
}

/// The request channels, with their capacities: the UI's ends in a [`FileWorker`] (replies
/// come on `replies`), the file thread's in an [`Inbox`].
fn channels(replies: Receiver<FileReply>) -> (FileWorker, Inbox) {
    let (views_tx, views) = bounded(VIEW_CAPACITY);
    let (commands_tx, commands) = bounded(COMMAND_CAPACITY);
    let (thumbs_tx, thumbs) = bounded(THUMB_CAPACITY);
    let worker = FileWorker {
        views: Outbox::new(views_tx),
        commands: Outbox::new(commands_tx),
        thumbs: Outbox::new(thumbs_tx),
        replies,
    };
    let inbox = Inbox {
        views,
        commands,
        thumbs,
    };
    (worker, inbox)
}

impl FileWorker {
    /// Starts the file thread; `wake` is called after every reply so the UI repaints. A thread
    /// that cannot start is a [`FileReply::Error`] waiting for the first frame.
    pub fn spawn(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (rep_tx, replies) = bounded::<FileReply>(REPLY_CAPACITY);
        let (worker, inbox) = channels(replies);
        let wake = Arc::new(wake);
        let tx = rep_tx.clone();
        // Sends a reply (blocking while the UI has not drained the channel) and wakes the UI;
        // false once the app is gone.
        let send = move |reply| {
            let sent = tx.send(reply).is_ok();
            wake();
            sent
        };
        if let Err(e) = super::spawn_thread("files", move || serve(&inbox, send)) {
            let _ = rep_tx.try_send(FileReply::Error(e));
        }
        worker
    }

    /// Lists these files and folders for the queue.
    pub fn add(&mut self, paths: Vec<PathBuf>) {
        self.commands.push(FileCommand::Add(paths));
    }

    /// Lists the adapters and reads the built-in models' figures.
    pub fn startup(&mut self) {
        self.commands.push(FileCommand::Startup);
    }

    pub fn thumbnail(&mut self, id: u64, path: PathBuf) {
        self.thumbs.push(ImageRequest { id, path });
    }

    /// The images a viewer opening needs; those of an earlier opening still waiting are dropped.
    pub fn view(&mut self, images: Vec<ImageRequest>) {
        self.views.waiting.clear();
        for image in images {
            self.views.push(image);
        }
    }

    /// Sends what waits as far as the channels take it; called every frame. Viewer images and
    /// thumbnails whose id the UI no longer wants are dropped, undecoded.
    pub fn flush(&mut self, wanted_view: impl Fn(u64) -> bool, wanted_thumb: impl Fn(u64) -> bool) {
        self.views.flush(|r| wanted_view(r.id));
        self.commands.flush(|_| true);
        self.thumbs.flush(|r| wanted_thumb(r.id));
    }
}

/// The file thread: serves requests in [`Inbox::next`]'s order until the app is gone.
fn serve(inbox: &Inbox, send: impl Fn(FileReply) -> bool + Clone + Send + 'static) {
    while let Some(request) = inbox.next() {
        let sent = match request {
            // Canonical paths: the same file reached another way is a duplicate the app can see
            // (and the job's item indices stay the app's).
            FileRequest::Command(FileCommand::Add(paths)) => {
                let listed = std::panic::catch_unwind(|| job::expand_inputs(&paths));
                match listed {
                    Ok(files) => send(FileReply::Added {
                        files: files
                            .into_iter()
                            .map(|p| p.canonicalize().unwrap_or(p))
                            .collect(),
                        folders: paths
                            .into_iter()
                            .filter(|p| p.is_dir())
                            .map(|p| p.canonicalize().unwrap_or(p))
                            .collect(),
                    }),
                    Err(panic) => send(FileReply::Error(format!(
                        "listing the dropped files failed: {}",
                        super::panic_text(&*panic)
                    ))),
                }
            }
            FileRequest::Thumbnail(ImageRequest { id, path }) => send(FileReply::Thumbnail {
                id,
                image: thumbnail(&path, THUMB_PX),
            }),
            FileRequest::View(ImageRequest { id, path }) => send(FileReply::View {
                id,
                image: thumbnail(&path, super::viewer::VIEW_PX),
            }),
            // The adapter list and the built-in models' figures take a few seconds: on a thread
            // of their own, so that dropped files are listed meanwhile.
            FileRequest::Command(FileCommand::Startup) => {
                let startup = send.clone();
                match super::spawn_thread("startup", move || {
                    startup(FileReply::Adapters(crate::gpu::list_adapters()))
                        && crate::builtin::BUILTINS.iter().all(|m| {
                            match m.choice().and_then(|c| c.info()) {
                                Ok(info) => startup(FileReply::ModelInfo(m.id.to_owned(), info)),
                                Err(_) => true,
                            }
                        })
                }) {
                    Ok(_) => true,
                    Err(e) => send(FileReply::Error(e)),
                }
            }
        };
        if !sent {
            break;
        }
    }
}

/// The image at most `px` on its longer side (smaller images as they are), upright by its EXIF
/// orientation, read as the job reads it (regular files only, within the default memory limit);
/// None for what cannot be shown, a decoder panic included.
fn thumbnail(path: &std::path::Path, px: u32) -> Option<egui::ColorImage> {
    let limits = job::ItemLimits {
        max_bytes: job::MAX_DECODE_BYTES,
        scale: 1,
        streamed: false,
        resampled: None,
        kept_area: 0,
    };
    let read = std::panic::catch_unwind(|| job::read_upright(path, limits));
    let (img, _) = read.ok()?.ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Thumbnails read as the job reads: a portrait JPEG (EXIF orientation 6) comes out upright
    /// (9 x 20 from 20 x 9 stored), and a FIFO named `.png` gets no thumbnail without being
    /// opened (it would block the file thread forever).
    #[test]
    fn thumbnails_are_upright_and_skip_special_files() {
        use image::ImageEncoder as _;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let stored =
            image::RgbImage::from_fn(20, 9, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 0]));
        // A little-endian TIFF chunk with one entry: Orientation (0x0112) = 6.
        let exif = vec![
            0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let mut jpeg = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        encoder.set_exif_metadata(exif).expect("exif");
        encoder
            .write_image(stored.as_raw(), 20, 9, image::ExtendedColorType::Rgb8)
            .expect("encode");
        let portrait = dir.path().join("portrait.jpg");
        std::fs::write(&portrait, jpeg).expect("write");
        let thumb = thumbnail(&portrait, 64).expect("a thumbnail");
        assert_eq!(thumb.size, [9, 20]);
        let fifo = dir.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(thumbnail(&fifo, 64).is_none());
        }
    }

    /// A grey model's outputs (8 and 16-bit grey PNG) get thumbnails, grey (R = G = B) and
    /// opaque, 16-bit values narrowed to their 8-bit level.
    #[test]
    fn grey_outputs_get_grey_thumbnails() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let eight = image::GrayImage::from_fn(30, 7, |x, y| image::Luma([(x * 8 + y) as u8]));
        let wide: image::ImageBuffer<image::Luma<u16>, Vec<u16>> =
            image::ImageBuffer::from_fn(30, 7, |x, y| {
                image::Luma([eight.get_pixel(x, y)[0] as u16 * 257])
            });
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        eight.save(&a).expect("write");
        wide.save(&b).expect("write");
        for path in [a, b] {
            let thumb = thumbnail(&path, 64).expect("a thumbnail");
            assert_eq!(thumb.size, [30, 7]);
            for (i, p) in thumb.pixels.iter().enumerate() {
                let want = eight.as_raw()[i];
                assert_eq!([p.r(), p.g(), p.b(), p.a()], [want, want, want, 255]);
            }
        }
    }

    /// What a reply answers, for comparing orders.
    fn answered(reply: &FileReply) -> String {
        match reply {
            FileReply::View { id, .. } => format!("view {id}"),
            FileReply::Thumbnail { id, .. } => format!("thumb {id}"),
            FileReply::Added { .. } => "added".into(),
            _ => "other".into(),
        }
    }

    /// With the thumbnail channel full and the viewer's images and a listing queued after it,
    /// the file thread's loop serves the viewer's images first, then the listing, then the
    /// thumbnails in their order. Everything is queued before the loop starts (and it runs on
    /// this thread), so the order does not depend on timing.
    #[test]
    fn viewer_images_are_served_before_queued_thumbnails() {
        let (mut files, inbox) = channels(bounded(1).1);
        let missing = std::env::temp_dir().join("batchwise-no-such-image.png");
        let queued = THUMB_CAPACITY as u64 + 5;
        for item in 0..queued {
            files.thumbnail(item << 1, missing.clone());
        }
        // The channel holds its capacity; the rest waits in the outbox.
        assert_eq!(files.thumbs.waiting.len(), 5);
        files.add(Vec::new());
        let view = |id| ImageRequest {
            id,
            path: missing.clone(),
        };
        files.view(vec![view(7 << 1), view((7 << 1) | 1)]);
        assert!(files.views.waiting.is_empty());

        let expected = 2 + 1 + THUMB_CAPACITY;
        let served = Arc::new(Mutex::new(Vec::new()));
        let log = served.clone();
        // Ends the loop (as a closed app would) after the last request in the channels.
        serve(&inbox, move |reply: FileReply| {
            let mut log = log.lock().unwrap();
            log.push(answered(&reply));
            log.len() < expected
        });

        let served = served.lock().unwrap().clone();
        let mut want = vec!["view 14".to_owned(), "view 15".into(), "added".into()];
        want.extend((0..THUMB_CAPACITY).map(|item| format!("thumb {}", item << 1)));
        assert_eq!(served, want);

        // The thumbnails left in the outbox go once the channel has room, except that of an
        // item removed meanwhile.
        let removed = THUMB_CAPACITY as u64 + 1;
        files.flush(|_| true, |id| id >> 1 != removed);
        assert!(files.thumbs.waiting.is_empty());
        let thumbs: Vec<u64> = inbox.thumbs.try_iter().map(|r| r.id >> 1).collect();
        let n = THUMB_CAPACITY as u64;
        assert_eq!(thumbs, [n, n + 2, n + 3, n + 4]);

        // With the viewer channel full, a later opening waits and replaces one still waiting.
        files.view(vec![view(8 << 1), view((8 << 1) | 1)]);
        files.view(vec![view(9 << 1)]);
        files.view(vec![view(10 << 1)]);
        assert_eq!(files.views.waiting.len(), 1);
        let taken: Vec<u64> = inbox.views.try_iter().map(|r| r.id).collect();
        assert_eq!(taken, [8 << 1, (8 << 1) | 1]);
        files.flush(|id| id >> 1 == 10, |_| true);
        let taken: Vec<u64> = inbox.views.try_iter().map(|r| r.id).collect();
        assert_eq!(taken, [10 << 1]);
        // Closing the viewer drops what waits for it.
        files.view(vec![view(11 << 1), view(11 << 1), view(11 << 1)]);
        files.flush(|_| false, |_| true);
        assert!(files.views.waiting.is_empty());
    }
}
