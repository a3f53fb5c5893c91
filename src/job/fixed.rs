//! The fixed-input stage: classifiers, embedders, face detectors and background removal. A
//! batch holds whole images fitted to the model's input (centre crop, stretch, letterbox); each
//! image's outputs are analysed on the I/O pool into its result (labels, an embedding, faces)
//! and, for masks and annotated faces, a file of its own.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use image::DynamicImage;

use super::decode::{Decoded, Prepare, Prepared};
use super::export::image::{Planes, write_image};
use super::pipeline::{BatchFailure, DECODE_AHEAD, Stage, WriteTask};
use super::resume::Record;
use super::{AnalysisOptions, ItemResult, JobSpec, MAX_AUTO_BATCH, Sizing};
use crate::analyze::{self, Fit, Placement};
use crate::builtin::Task;
use crate::engine::{BatchRunner, Engine, GpuModel, SubmittedFloats};
use crate::job::naming::ExportOptions;
use crate::tiling::Pixels;

/// An image decoded and fitted to the model's input, waiting for its batch's results.
pub(crate) struct Fitted {
    index: usize,
    /// The image's width and height (its pixels are kept only where the result needs them).
    size: [u32; 2],
    decoded: Decoded,
    placement: Placement,
    /// The fitted input, RGBA8 a pixel.
    input: Vec<u32>,
}

/// `decoded` fitted to a `size` x `size` input.
fn prepare(decoded: &Decoded, size: u32, fit: Fit) -> Prepared {
    let (fitted, placement) = analyze::fit(&decoded.rgba.to_rgba8(), size, fit);
    let (w, h) = decoded.rgba.dimensions();
    Prepared {
        input: fitted.pixels().map(|p| u32::from_le_bytes(p.0)).collect(),
        placement,
        size: [w, h],
    }
}

/// What turns one image's outputs into its result, shared by the write tasks.
struct Analyzer {
    task: Task,
    analysis: AnalysisOptions,
    export: ExportOptions,
    labels: Vec<String>,
    /// The model's input side.
    size: u32,
}

pub(crate) struct FixedStage<'a> {
    engine: &'a Engine,
    model: &'a GpuModel,
    spec: &'a JobSpec,
    outputs: Vec<PathBuf>,
    records: Vec<Option<Record>>,
    runner: Option<BatchRunner>,
    analyzer: Arc<Analyzer>,
    waiting: VecDeque<Fitted>,
    /// Images admitted and not finished or failed.
    active: HashSet<usize>,
}

impl<'a> FixedStage<'a> {
    pub fn new(
        engine: &'a Engine,
        model: &'a GpuModel,
        spec: &'a JobSpec,
        outputs: Vec<PathBuf>,
        records: Vec<Option<Record>>,
    ) -> Self {
        let labels = match spec.model.task {
            Task::Classify => crate::builtin::imagenet_labels(),
            _ => Vec::new(),
        };
        Self {
            engine,
            model,
            spec,
            outputs,
            records,
            runner: None,
            analyzer: Arc::new(Analyzer {
                task: spec.model.task,
                analysis: spec.analysis.clone(),
                export: spec.export.clone(),
                labels,
                size: spec.model.input_size,
            }),
            waiting: VecDeque::new(),
            active: HashSet::new(),
        }
    }

    /// The batch size to allocate: `asked`, or for Auto what fits `budget` at the model's input
    /// size; either way no more than `todo` images.
    pub fn batch_to_allocate(&self, asked: u32, budget: u64, todo: usize) -> Result<Sizing> {
        let size = self.spec.model.input_size;
        let fits = if asked == super::AUTO_BATCH {
            let plan = crate::engine::plan(self.model, size, size, 1)?;
            ((budget.saturating_sub(plan.weight_bytes) / plan.bytes_per_item.max(1)) as u32)
                .clamp(1, MAX_AUTO_BATCH)
        } else {
            asked.max(1)
        };
        Ok(Sizing {
            batch: fits.min(todo.max(1) as u32),
            tile: size,
            side: size,
        })
    }

    /// Frees the runner (before a new one is allocated beside another stage's).
    pub fn release(&mut self) {
        self.runner = None;
    }

    fn runner(&self) -> &BatchRunner {
        self.runner
            .as_ref()
            .expect("the pipeline builds the runner before using the stage")
    }

    /// Only masks and annotated faces need the pixels after the batch; the others keep the size.
    fn keeps_pixels(&self) -> bool {
        let task = self.spec.model.task;
        task == Task::Segment || (task == Task::DetectFaces && self.spec.analysis.annotate)
    }
}

impl Stage for FixedStage<'_> {
    type Flight = (Vec<Fitted>, SubmittedFloats);

    fn rebuild(&mut self, batch: u32) -> Result<()> {
        self.runner = None;
        let size = self.spec.model.input_size;
        let map = &self.spec.model.spec.input_map;
        self.runner = Some(BatchRunner::new(
            self.engine,
            self.model,
            batch,
            size,
            size,
            map,
        )?);
        Ok(())
    }

    fn batch_size(&self) -> u32 {
        self.runner().max_items
    }

    fn tile_size(&self) -> u32 {
        self.spec.model.input_size
    }

    fn decode_ahead(&self) -> usize {
        self.batch_size() as usize + DECODE_AHEAD
    }

    fn dispatches(&self) -> usize {
        self.runner().dispatches()
    }

    /// Fits each image to the model's input in its decode task, and drops the pixels there
    /// where the result does not need them.
    fn prepare(&self) -> Option<Prepare> {
        let size = self.spec.model.input_size;
        let fit = Fit::for_task(self.spec.model.task);
        let keep = self.keeps_pixels();
        Some(Arc::new(move |decoded: &mut Decoded| {
            decoded.prepared = Some(prepare(decoded, size, fit));
            if !keep {
                decoded.rgba = Pixels::Eight(Default::default());
            }
        }))
    }

    fn admit(&mut self, index: usize, mut decoded: Decoded) {
        let size = self.spec.model.input_size;
        let fit = Fit::for_task(self.spec.model.task);
        let prepared = match decoded.prepared.take() {
            Some(p) => p,
            None => prepare(&decoded, size, fit),
        };
        if !self.keeps_pixels() {
            decoded.rgba = Pixels::Eight(Default::default());
        }
        self.active.insert(index);
        self.waiting.push_back(Fitted {
            index,
            size: prepared.size,
            decoded,
            placement: prepared.placement,
            input: prepared.input,
        });
    }

    fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn submit(&mut self) -> Result<Self::Flight, BatchFailure> {
        let take = self.waiting.len().min(self.batch_size() as usize);
        let batch: Vec<Fitted> = self.waiting.drain(..take).collect();
        let pixels: Vec<u32> = batch.iter().flat_map(|f| f.input.iter().copied()).collect();
        match self.runner().submit_f32(&pixels, batch.len() as u32) {
            Ok(s) => Ok((batch, s)),
            Err(error) => {
                let images = batch.iter().map(|f| f.index).collect();
                // The images wait again: a smaller batch may take them.
                for f in batch.into_iter().rev() {
                    self.waiting.push_front(f);
                }
                Err(BatchFailure { images, error })
            }
        }
    }

    fn land(
        &mut self,
        (batch, s): Self::Flight,
        start: &mut dyn FnMut(usize, WriteTask),
    ) -> Result<(), BatchFailure> {
        let outs = match self.runner().collect_floats(s) {
            Ok(outs) => outs,
            Err(error) => {
                let images = batch.iter().map(|f| f.index).collect();
                return Err(BatchFailure { images, error });
            }
        };
        let items = batch.len();
        for (k, fitted) in batch.into_iter().enumerate() {
            let i = fitted.index;
            if !self.active.remove(&i) {
                continue;
            }
            // Output o of this image.
            let own: Vec<Vec<f32>> = outs
                .iter()
                .map(|o| {
                    let per = o.len() / items;
                    o[k * per..(k + 1) * per].to_vec()
                })
                .collect();
            let analyzer = self.analyzer.clone();
            let path = self.outputs[i].clone();
            let record = self.records[i].clone();
            let task: WriteTask =
                Box::new(move || analyzer.analyze(&own, fitted, &path, record.as_ref()));
            start(i, task);
        }
        Ok(())
    }

    fn forget(&mut self, index: usize) -> bool {
        self.waiting.retain(|f| f.index != index);
        self.active.remove(&index)
    }

    fn in_progress(&self) -> Vec<usize> {
        self.active.iter().copied().collect()
    }
}

impl Analyzer {
    /// Turns one image's outputs (`outs[k]`: output k) into its result, writing the image's own
    /// file for masks and annotated faces, and recording it in the manifest.
    fn analyze(
        &self,
        outs: &[Vec<f32>],
        fitted: Fitted,
        path: &std::path::Path,
        record: Option<&Record>,
    ) -> Result<Option<ItemResult>, String> {
        let Fitted {
            decoded: d,
            placement,
            size: [w, h],
            ..
        } = fitted;
        let out = |k: usize| outs.get(k).map_or(&[][..], Vec::as_slice);
        // The manifest line that lets a resumed run reuse this result.
        let with_result = |r: &ItemResult| {
            record.map(|rec| Record {
                writer: rec.writer.clone(),
                entry: crate::manifest::Entry {
                    result: serde_json::to_value(r).ok(),
                    ..rec.entry.clone()
                },
            })
        };
        let collected = |r: ItemResult| {
            if let Some(rec) = with_result(&r) {
                rec.writer.append(&rec.entry)?;
            }
            Ok(Some(r))
        };
        match self.task {
            Task::Classify => collected(ItemResult::Labels(analyze::top_labels(
                out(0),
                &self.labels,
                self.analysis.top_k,
            ))),
            Task::Embed => collected(ItemResult::Embedding(out(0).to_vec())),
            Task::Tensors => collected(ItemResult::Tensors(outs.to_vec())),
            Task::DetectFaces => {
                let faces = analyze::face_boxes(out(0), out(1), &placement, [w, h]);
                let result = ItemResult::Faces {
                    size: [w, h],
                    faces,
                };
                if !self.analysis.annotate {
                    return collected(result);
                }
                let mut img = d.rgba.to_rgba8().into_owned();
                if let ItemResult::Faces { faces, .. } = &result {
                    analyze::annotate(&mut img, faces);
                }
                let rec = with_result(&result);
                let meta = &d.meta;
                write_image(
                    path,
                    Pixels::Eight(img),
                    Planes::Rgb(None),
                    meta,
                    &self.export,
                    rec.as_ref(),
                )?;
                Ok(Some(result))
            }
            Task::Segment => {
                let mask = analyze::mask_to_image(out(0), self.size, w, h);
                // --mask-only: the mask as a grey image (its value in R, G and B, as `Planes::Grey`
                // reads it); else the photo with the mask as its alpha.
                let (rgba, planes) = if self.analysis.mask_only {
                    let gray = DynamicImage::ImageLuma8(mask).to_rgba8();
                    (Pixels::Eight(gray), Planes::Grey)
                } else {
                    (d.rgba, Planes::Rgb(Some(DynamicImage::ImageLuma8(mask))))
                };
                write_image(path, rgba, planes, &d.meta, &self.export, record)?;
                Ok(None)
            }
            Task::Upscale | Task::Enhance => {
                Err("a tiled model came to the fixed-input path".into())
            }
        }
    }
}
