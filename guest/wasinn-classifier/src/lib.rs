//! `wasinn_classifier`: the EfficientNet-Lite0 classifier with inference delegated to the host's WASI-NN
//! (`wasi_ephemeral_nn`). Requests, responses and errors are the ones every classifier guest shares
//! (guest/classifier-common, docs/classifier.md); preprocessing runs in the guest (guest/vision) and the HWC tensor is
//! transposed to NCHW for the ONNX / OpenVINO model. What is this crate's own: the load mode and the wasi-nn calls
//! (`nn`, over the raw binding guest/wasi-nn-sys).
//!
//! How the graph is obtained (`"load"` in the request): `"name"` (default) calls `load_by_name(model_id)`, a
//! model the host preloaded (`--nn-preload efficientnet-lite0`); `"bytes"` reads `/models/<id>/model.onnx` and
//! calls `load` with encoding ONNX. The graph and its execution context are kept for later requests.

mod nn;

use std::cell::RefCell;
use std::fs;
use std::io::Read;

use classifier_common::{store_file, vision_error, Decoded, GuestError, ModelInfo, Request, Response, HWC, SIDE, STORE};
use edgewasm_guest::export_infer_bytes;
use vision::{Layout, Preprocessor};
use wasi_nn_sys::{encoding, errno};

edgewasm_guest::needs_models!();
export_infer_bytes!(handle);

#[derive(Clone, Copy, PartialEq, Eq)]
enum LoadMode {
    ByName,
    Bytes,
}

/// The graph currently in use, its execution context and what the response needs from the store.
struct Model {
    id: String,
    mode: LoadMode,
    ctx: u32,
    info: ModelInfo,
}

struct State {
    model: Option<Model>,
    pre: Preprocessor,
    hwc: Vec<f32>,
    nchw: Vec<f32>,
    logits: Vec<f32>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        model: None,
        pre: Preprocessor::new(),
        hwc: vec![0.0; HWC],
        nchw: vec![0.0; HWC],
        logits: vec![0.0; 1000],
    });
}

/// A missing store file: the store is not mounted, or this model is not in it.
fn missing(id: &str, path: &str, e: std::io::Error) -> GuestError {
    if fs::metadata(STORE).is_err() {
        GuestError::model_unavailable(format!(
            "the model store is not mounted at {} (reading {}: {})",
            STORE, path, e
        ))
    } else if fs::metadata(format!("{}/{}", STORE, id)).is_err() {
        GuestError::not_found(format!("model {:?} is not in the model store", id))
    } else {
        GuestError::model_unavailable(format!("model {:?} is incomplete: cannot read {}: {}", id, path, e))
    }
}

/// The model version from the EWT weight file's header (`meta version <v>`), read without the weights.
fn read_version(id: &str) -> String {
    let read = || -> Option<String> {
        let mut f = fs::File::open(store_file(id, "weights.ewt")).ok()?;
        let mut head = [0u8; 8];
        f.read_exact(&mut head).ok()?;
        if &head[..4] != b"EWT1" {
            return None;
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut header = vec![0u8; len.min(1 << 20)];
        f.read_exact(&mut header).ok()?;
        let text = String::from_utf8(header).ok()?;
        let line = text.lines().find(|l| l.starts_with("meta version "))?;
        Some(line["meta version ".len()..].trim().to_string())
    };
    read().unwrap_or_else(|| "unknown".to_string())
}

fn nn_error(what: &str, id: &str, rc: u32) -> GuestError {
    if rc == errno::NOT_FOUND {
        return GuestError::not_found(format!(
            "model {:?} is not preloaded by the host (start it with --nn-preload {}), or send \"load\": \"bytes\"",
            id, id
        ));
    }
    GuestError::internal(format!(
        "wasi-nn {} failed for {:?}: errno {} ({})",
        what,
        id,
        rc,
        errno::name(rc).unwrap_or("unknown error")
    ))
}

/// Labels and version from the store, then the graph (by name, or from the ONNX bytes) and its context.
fn open_model(id: &str, mode: LoadMode) -> Result<Model, GuestError> {
    let path = store_file(id, "labels.txt");
    let labels = classifier_common::read_labels(&path).map_err(|e| missing(id, &path, e))?;
    let graph = match mode {
        LoadMode::ByName => nn::graph_by_name(id).map_err(|rc| nn_error("load_by_name", id, rc))?,
        LoadMode::Bytes => {
            let path = store_file(id, "model.onnx");
            let bytes = fs::read(&path).map_err(|e| missing(id, &path, e))?;
            nn::graph_from_bytes(&bytes, encoding::ONNX).map_err(|rc| nn_error("load", id, rc))?
        }
    };
    let ctx = nn::context(graph).map_err(|rc| nn_error("init_execution_context", id, rc))?;
    Ok(Model {
        id: id.to_string(),
        mode,
        ctx,
        info: ModelInfo {
            labels,
            version: read_version(id),
        },
    })
}

/// Little-endian f32 HWC bytes (a checked `tensor`: finite values) -> CHW floats.
fn tensor_to_nchw(data: &[u8], nchw: &mut [f32]) {
    let plane = SIDE * SIDE;
    let (r, rest) = nchw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in data.chunks_exact(12).enumerate() {
        r[i] = f32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        g[i] = f32::from_le_bytes([px[4], px[5], px[6], px[7]]);
        b[i] = f32::from_le_bytes([px[8], px[9], px[10], px[11]]);
    }
}

/// CHW [3][224][224] -> HWC [224][224][3].
fn to_hwc(nchw: &[f32], hwc: &mut [f32]) {
    let plane = SIDE * SIDE;
    let (r, rest) = nchw.split_at(plane);
    let (g, b) = rest.split_at(plane);
    for (i, px) in hwc.chunks_exact_mut(3).enumerate() {
        px[0] = r[i];
        px[1] = g[i];
        px[2] = b[i];
    }
}

/// `"load"`: `"name"` (default) or `"bytes"`.
fn load_mode(req: &Request<'_>) -> Result<LoadMode, GuestError> {
    match req.load.unwrap_or("name") {
        "name" => Ok(LoadMode::ByName),
        "bytes" => Ok(LoadMode::Bytes),
        other => Err(GuestError::bad_request(format!(
            "load must be \"name\" or \"bytes\", not {}",
            classifier_common::shown(other)
        ))),
    }
}

impl State {
    fn model(&self) -> &Model {
        self.model.as_ref().expect("the model is loaded first")
    }
}

impl classifier_common::Classifier for State {
    fn check(&self, req: &Request<'_>) -> Result<(), GuestError> {
        classifier_common::check_model_id(req.model_id())?;
        load_mode(req).map(|_| ())
    }

    fn load(&mut self, req: &Request<'_>) -> Result<bool, GuestError> {
        let (id, mode) = (req.model_id(), load_mode(req)?);
        if matches!(&self.model, Some(m) if m.id == id && m.mode == mode) {
            return Ok(false);
        }
        self.model = None;
        self.model = Some(open_model(id, mode)?);
        Ok(true)
    }

    fn info(&self) -> &ModelInfo {
        &self.model().info
    }

    fn preprocess(&mut self, input: Decoded<'_>, keep_hwc: bool) -> Result<(), GuestError> {
        match input {
            // Preprocessed straight into the NCHW planes; HWC (the same values) only when the response carries it.
            Decoded::Pixels(px, w, h) => {
                self.pre.run_into(px, w, h, &mut self.nchw, Layout::Chw).map_err(vision_error)?;
                if keep_hwc {
                    to_hwc(&self.nchw, &mut self.hwc);
                }
            }
            // Straight from the request bytes to NCHW: no intermediate HWC copy (the common, fast path).
            Decoded::Tensor(data) => {
                tensor_to_nchw(data, &mut self.nchw);
                if keep_hwc {
                    classifier_common::read_f32_le(data, &mut self.hwc);
                }
            }
        }
        Ok(())
    }

    fn infer(&mut self) -> Result<(), GuestError> {
        let m = self.model.as_ref().expect("the model is loaded first");
        self.logits.resize(m.info.labels.len().max(1000), 0.0);
        nn::run_f32(m.ctx, &[1, 3, SIDE as u32, SIDE as u32], &self.nchw, &mut self.logits)
            .map_err(|rc| nn_error("inference", &m.id, rc))
    }

    fn logits(&self) -> &[f32] {
        &self.logits
    }

    fn hwc(&self) -> &[f32] {
        &self.hwc
    }
}

fn handle(bytes: &[u8]) -> Result<Response, GuestError> {
    STATE.with(|cell| classifier_common::classify(&mut *cell.borrow_mut(), bytes))
}
