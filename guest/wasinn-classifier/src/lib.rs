//! `wasinn_classifier`: the EfficientNet-Lite0 classifier with inference delegated to the host's WASI-NN
//! (`wasi_ephemeral_nn`). Requests and responses are the pure classifier's (the team brief): `image` (JPEG/PNG
//! bytes), `pixels` (uint8 HxWx3), `image_data` + `width` + `height` (f32 RGB 0..255) or `tensor` (float32
//! [224,224,3], preprocessed); `model_id`, `top_k`, `return_logits`, `return_tensor`. Preprocessing runs in
//! the guest (`vision` crate); the HWC tensor is transposed to NCHW for the ONNX / OpenVINO model.
//!
//! How the graph is obtained (`"load"` in the request): `"name"` (default) calls `load_by_name(model_id)`, a
//! model the host preloaded (`--nn-preload efficientnet-lite0`); `"bytes"` reads `/models/<id>/model.onnx` and
//! calls `load` with encoding ONNX. The graph and its execution context are kept for later requests.

mod nn;

use std::cell::RefCell;
use std::fs;
use std::io::Read;
use std::time::Instant;

use edgewasm_guest::{decode, export_infer_bytes, GuestError, NdArray, NdArrayRef};
use serde::{Deserialize, Serialize};
use vision::{Pixels, Preprocessor, VisionError, CROP};

edgewasm_guest::needs_models!();

const DEFAULT_MODEL: &str = "efficientnet-lite0";
const STORE: &str = "/models";
const HWC: usize = CROP * CROP * 3;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default, borrow, with = "serde_bytes")]
    image: Option<&'a [u8]>,
    #[serde(default, borrow)]
    pixels: Option<NdArrayRef<'a>>,
    #[serde(default)]
    image_data: Option<Vec<f32>>,
    #[serde(default)]
    width: Option<i64>,
    #[serde(default)]
    height: Option<i64>,
    #[serde(default, borrow)]
    tensor: Option<NdArrayRef<'a>>,
    #[serde(default, borrow)]
    model_id: Option<&'a str>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    return_logits: bool,
    #[serde(default)]
    return_tensor: bool,
    #[serde(default, borrow)]
    load: Option<&'a str>,
}

#[derive(Serialize)]
struct Top {
    class_id: u32,
    label: String,
    confidence: f64,
}

#[derive(Serialize)]
struct Stages {
    decode: f64,
    preprocess: f64,
    inference: f64,
    postprocess: f64,
}

#[derive(Serialize)]
struct Response {
    label: String,
    confidence: f64,
    class_id: u32,
    latency_ms: f64,
    model_version: String,
    top5: Vec<Top>,
    stages_ms: Stages,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<NdArray>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tensor: Option<NdArray>,
}

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
    labels: Vec<String>,
    version: String,
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

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn vision_error(e: VisionError) -> GuestError {
    match e {
        VisionError::BadRequest(m) => GuestError::bad_request(m),
        VisionError::Decode(m) => GuestError::decode(m),
    }
}

/// An image_data dimension: present and 1..=MAX_DIM.
fn dim(v: Option<i64>, name: &str) -> Result<usize, GuestError> {
    match v {
        None => Err(GuestError::bad_request(format!("image_data needs width and height ({} is missing)", name))),
        Some(x) if x <= 0 || x > vision::MAX_DIM as i64 => {
            Err(GuestError::bad_request(format!("{} must be 1..{}, got {}", name, vision::MAX_DIM, x)))
        }
        Some(x) => Ok(x as usize),
    }
}

fn check_model_id(id: &str) -> Result<(), GuestError> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(GuestError::bad_request(format!("model_id {:?} is not a valid model id", id)))
    }
}

fn store_file(id: &str, name: &str) -> String {
    format!("{}/{}/{}", STORE, id, name)
}

/// A missing store file: the store is not mounted, or this model is not in it.
fn missing(id: &str, path: &str, e: std::io::Error) -> GuestError {
    if fs::metadata(STORE).is_err() {
        GuestError::model_unavailable(format!("the model store is not mounted at {} (reading {}: {})", STORE, path, e))
    } else if fs::metadata(format!("{}/{}", STORE, id)).is_err() {
        GuestError::not_found(format!("model {:?} is not in the model store", id))
    } else {
        GuestError::model_unavailable(format!("model {:?} is incomplete: cannot read {}: {}", id, path, e))
    }
}

fn read_labels(id: &str) -> Result<Vec<String>, GuestError> {
    let path = store_file(id, "labels.txt");
    let text = fs::read_to_string(&path).map_err(|e| missing(id, &path, e))?;
    Ok(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
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
    if rc == nn::NOT_FOUND {
        return GuestError::not_found(format!(
            "model {:?} is not preloaded by the host (start it with --nn-preload {}), or send \"load\": \"bytes\"",
            id, id
        ));
    }
    GuestError::internal(format!("wasi-nn {} failed for {:?}: errno {} ({})", what, id, rc, nn::errno_name(rc)))
}

fn open_model(id: &str, mode: LoadMode) -> Result<Model, GuestError> {
    let labels = read_labels(id)?;
    let graph = match mode {
        LoadMode::ByName => nn::graph_by_name(id).map_err(|rc| nn_error("load_by_name", id, rc))?,
        LoadMode::Bytes => {
            let path = store_file(id, "model.onnx");
            let bytes = fs::read(&path).map_err(|e| missing(id, &path, e))?;
            nn::graph_from_bytes(&bytes, nn::ENCODING_ONNX).map_err(|rc| nn_error("load", id, rc))?
        }
    };
    let ctx = nn::context(graph).map_err(|rc| nn_error("init_execution_context", id, rc))?;
    Ok(Model { id: id.to_string(), mode, ctx, labels, version: read_version(id) })
}

/// Fills `state.hwc` (or, for a `tensor`, `state.nchw` directly) from whichever input the request carries;
/// returns (decode_ms, preprocess_ms, nchw_ready).
fn preprocess(req: &Request<'_>, state: &mut State) -> Result<(f64, f64, bool), GuestError> {
    let given = [req.image.is_some(), req.pixels.is_some(), req.image_data.is_some(), req.tensor.is_some()];
    match given.iter().filter(|g| **g).count() {
        0 => return Err(GuestError::bad_request("the request has none of image, pixels, image_data, tensor")),
        1 => {}
        _ => return Err(GuestError::bad_request("give only one of image, pixels, image_data, tensor")),
    }
    let State { pre, hwc, nchw, .. } = state;
    if let Some(bytes) = req.image {
        let t0 = Instant::now();
        let img = vision::decode(bytes).map_err(vision_error)?;
        let decode_ms = ms(t0);
        let t1 = Instant::now();
        pre.run(Pixels::U8(&img.data), img.width, img.height, hwc).map_err(vision_error)?;
        return Ok((decode_ms, ms(t1), false));
    }
    let t1 = Instant::now();
    if let Some(px) = &req.pixels {
        if px.shape.len() != 3 || px.shape[2] != 3 {
            return Err(GuestError::bad_request(format!("pixels must be uint8 HxWx3, got shape {:?}", px.shape)));
        }
        let data = px.as_u8()?;
        pre.run(Pixels::U8(data), px.shape[1] as usize, px.shape[0] as usize, hwc).map_err(vision_error)?;
    } else if let Some(values) = &req.image_data {
        let (w, h) = (dim(req.width, "width")?, dim(req.height, "height")?);
        pre.run(Pixels::F32(values), w, h, hwc).map_err(vision_error)?;
    } else if let Some(t) = &req.tensor {
        if t.shape != [CROP as u64, CROP as u64, 3] {
            return Err(GuestError::bad_request(format!("tensor must be float32 [224, 224, 3], got shape {:?}", t.shape)));
        }
        if t.dtype != "float32" {
            return Err(GuestError::bad_request(format!("tensor must be float32, got {}", t.dtype)));
        }
        t.validate()?;
        // Straight from the request bytes to NCHW: no intermediate HWC copy (the common, fast path).
        tensor_to_nchw(t.data, nchw)?;
        if req.return_tensor {
            for (dst, src) in hwc.iter_mut().zip(t.data.chunks_exact(4)) {
                *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
            }
        }
        return Ok((0.0, ms(t1), true));
    }
    Ok((0.0, ms(t1), false))
}

/// Little-endian f32 HWC bytes -> CHW floats, refusing NaN and infinities.
fn tensor_to_nchw(data: &[u8], nchw: &mut [f32]) -> Result<(), GuestError> {
    let plane = CROP * CROP;
    let (r, rest) = nchw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let mut finite = true;
    for (i, px) in data.chunks_exact(12).enumerate() {
        let pr = f32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        let pg = f32::from_le_bytes([px[4], px[5], px[6], px[7]]);
        let pb = f32::from_le_bytes([px[8], px[9], px[10], px[11]]);
        finite &= pr.is_finite() & pg.is_finite() & pb.is_finite();
        r[i] = pr;
        g[i] = pg;
        b[i] = pb;
    }
    if !finite {
        let i = data.chunks_exact(4).position(|v| !f32::from_le_bytes([v[0], v[1], v[2], v[3]]).is_finite());
        return Err(GuestError::bad_request(format!("tensor[{}] is not a finite number", i.unwrap_or(0))));
    }
    Ok(())
}

/// HWC [224][224][3] -> CHW [3][224][224].
fn to_nchw(hwc: &[f32], nchw: &mut [f32]) {
    let plane = CROP * CROP;
    let (r, rest) = nchw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
}

fn classify(bytes: &[u8]) -> Result<Response, GuestError> {
    let start = Instant::now();
    let req: Request<'_> = decode(bytes)?;
    let id = req.model_id.unwrap_or(DEFAULT_MODEL);
    check_model_id(id)?;
    let mode = match req.load.unwrap_or("name") {
        "name" => LoadMode::ByName,
        "bytes" => LoadMode::Bytes,
        other => return Err(GuestError::bad_request(format!("load must be \"name\" or \"bytes\", not {:?}", other))),
    };
    let top_k = req.top_k.unwrap_or(5);
    if top_k < 1 {
        return Err(GuestError::bad_request(format!("top_k must be 1..1000, got {}", top_k)));
    }
    STATE.with(|cell| {
        let mut state = cell.borrow_mut();
        let (decode_ms, mut preprocess_ms, nchw_ready) = preprocess(&req, &mut state)?;
        if !nchw_ready {
            let t1 = Instant::now();
            let State { hwc, nchw, .. } = &mut *state;
            to_nchw(hwc, nchw);
            preprocess_ms += ms(t1);
        }

        let t2 = Instant::now();
        let reuse = matches!(&state.model, Some(m) if m.id == id && m.mode == mode);
        if !reuse {
            state.model = None;
            state.model = Some(open_model(id, mode)?);
        }
        let State { model, nchw, logits, hwc, .. } = &mut *state;
        let model = model.as_ref().expect("model opened above");
        logits.resize(model.labels.len().max(1000), 0.0);
        nn::run_f32(model.ctx, &[1, 3, CROP as u32, CROP as u32], nchw, logits)
            .map_err(|rc| nn_error("inference", id, rc))?;
        let inference_ms = ms(t2);

        let t3 = Instant::now();
        if logits.len() != model.labels.len() {
            return Err(GuestError::internal(format!(
                "the model gave {} scores but {} has {} labels",
                logits.len(),
                id,
                model.labels.len()
            )));
        }
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = logits.iter().map(|&v| f64::from(v - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
        if top_k as usize > order.len() {
            return Err(GuestError::bad_request(format!("top_k must be 1..{}, got {}", order.len(), top_k)));
        }
        let top: Vec<Top> = order
            .iter()
            .take(top_k as usize)
            .map(|&c| Top { class_id: c as u32, label: model.labels[c].clone(), confidence: exps[c] / sum })
            .collect();
        let best = &top[0];
        let logits_out = if req.return_logits { Some(NdArray::from_f32_vec(logits.clone())) } else { None };
        let tensor_out = if req.return_tensor {
            Some(NdArray::from_f32(vec![CROP as u64, CROP as u64, 3], hwc)?)
        } else {
            None
        };
        let postprocess_ms = ms(t3);
        Ok(Response {
            label: best.label.clone(),
            confidence: best.confidence,
            class_id: best.class_id,
            latency_ms: ms(start),
            model_version: model.version.clone(),
            top5: top,
            stages_ms: Stages { decode: decode_ms, preprocess: preprocess_ms, inference: inference_ms, postprocess: postprocess_ms },
            logits: logits_out,
            tensor: tensor_out,
        })
    })
}

export_infer_bytes!(classify);
