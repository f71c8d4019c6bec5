//! The pure-WebAssembly image classifier: EfficientNet-Lite0 (guest/effnet) behind the edgewasm ABI v1.
//!
//! Request (msgpack map): exactly one input of `image` (JPEG/PNG bytes), `pixels` (uint8 HxWx3 array),
//! `image_data` (list of RGB floats 0..255, with `width` and `height`) or `tensor` (float32 [224,224,3],
//! already preprocessed); optional `model_id` (default "efficientnet-lite0"), `top_k` (default 5),
//! `return_logits`, `return_tensor`. The model is read once per instance from `/models/<model_id>/`.
//! See docs/classifier.md.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use edgewasm_guest::{export_infer_bytes, needs_models, GuestError, NdArray, NdArrayRef};
use serde::{Deserialize, Serialize};

needs_models!();
export_infer_bytes!(handle);

/// Model ids this guest can run (its network code is EfficientNet-Lite).
const KNOWN_MODELS: &[&str] = &["efficientnet-lite0"];
const DEFAULT_MODEL: &str = "efficientnet-lite0";
const STORE: &str = "/models";
const SIDE: usize = vision::CROP;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default, borrow)]
    image: Option<Bin<'a>>,
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
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    return_logits: Option<bool>,
    #[serde(default)]
    return_tensor: Option<bool>,
}

/// Image bytes: a msgpack `bin`, borrowed from the request. A string is refused (serde_bytes would take it).
struct Bin<'a>(&'a [u8]);

impl<'de: 'a, 'a> Deserialize<'de> for Bin<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JPEG or PNG bytes (msgpack bin)")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V).map(Bin)
    }
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

struct Model {
    net: effnet::Network,
    labels: Vec<String>,
    version: String,
}

/// Per-instance state: loaded models and the reusable preprocessing buffers.
struct State {
    models: HashMap<String, Model>,
    pre: vision::Preprocessor,
    input: Vec<f32>,
    logits: Vec<f32>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        models: HashMap::new(),
        pre: vision::Preprocessor::new(),
        input: vec![0.0; SIDE * SIDE * 3],
        logits: Vec::new(),
    });
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn install_hint(id: &str) -> String {
    format!("run `edgewasm models install {}`", id)
}

/// Reads `/models/<id>/weights.ewt` and `labels.txt`; every failure is `model_unavailable`.
fn load_model(id: &str) -> Result<Model, GuestError> {
    if std::fs::metadata(STORE).is_err() {
        return Err(GuestError::model_unavailable(format!(
            "the model store is not mounted at {} (the host mounts it for guests that need models); {} first",
            STORE,
            install_hint(id)
        )));
    }
    let dir = format!("{}/{}", STORE, id);
    let weights_path = format!("{}/weights.ewt", dir);
    let bytes = std::fs::read(&weights_path).map_err(|e| {
        GuestError::model_unavailable(format!(
            "model {} is not installed ({}: {}); {}",
            id,
            weights_path,
            e,
            install_hint(id)
        ))
    })?;
    let (ewt, net) = effnet::load(bytes).map_err(|e| {
        GuestError::model_unavailable(format!(
            "{} is unusable: {}; reinstall: {}",
            weights_path,
            e,
            install_hint(id)
        ))
    })?;
    let labels_path = format!("{}/labels.txt", dir);
    let text = std::fs::read_to_string(&labels_path).map_err(|e| {
        GuestError::model_unavailable(format!(
            "model {} is incomplete ({}: {}); {}",
            id,
            labels_path,
            e,
            install_hint(id)
        ))
    })?;
    let labels: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    if labels.len() != net.classes() {
        return Err(GuestError::model_unavailable(format!(
            "{} has {} lines but the model has {} classes; reinstall: {}",
            labels_path,
            labels.len(),
            net.classes(),
            install_hint(id)
        )));
    }
    let version = ewt.meta("version").unwrap_or("unknown").to_string();
    Ok(Model { net, labels, version })
}

enum Input<'a> {
    Image(&'a [u8]),
    Pixels(NdArrayRef<'a>),
    Floats(Vec<f32>, usize, usize),
    Tensor(NdArrayRef<'a>),
}

fn dim(v: Option<i64>, name: &str) -> Result<usize, GuestError> {
    match v {
        None => Err(GuestError::bad_request(format!(
            "image_data needs {} (and {})",
            name,
            if name == "width" { "height" } else { "width" }
        ))),
        Some(x) if x <= 0 || x > vision::MAX_DIM as i64 => Err(GuestError::bad_request(format!(
            "{} must be 1..{}, got {}",
            name,
            vision::MAX_DIM,
            x
        ))),
        Some(x) => Ok(x as usize),
    }
}

fn pick_input(req: Request<'_>) -> Result<Input<'_>, GuestError> {
    let given = [
        req.image.is_some(),
        req.pixels.is_some(),
        req.image_data.is_some(),
        req.tensor.is_some(),
    ];
    match given.iter().filter(|&&g| g).count() {
        1 => {}
        0 => {
            return Err(GuestError::bad_request(
                "the request needs one input: image (JPEG/PNG bytes), pixels (uint8 HxWx3), image_data (+ width, height) or tensor (float32 224x224x3)",
            ))
        }
        _ => return Err(GuestError::bad_request("give only one of image, pixels, image_data, tensor")),
    }
    if let Some(b) = req.image {
        return Ok(Input::Image(b.0));
    }
    if let Some(p) = req.pixels {
        return Ok(Input::Pixels(p));
    }
    if let Some(d) = req.image_data {
        let w = dim(req.width, "width")?;
        let h = dim(req.height, "height")?;
        return Ok(Input::Floats(d, w, h));
    }
    Ok(Input::Tensor(req.tensor.expect("one input is present")))
}

fn vision_err(e: vision::VisionError) -> GuestError {
    match e {
        vision::VisionError::BadRequest(m) => GuestError::bad_request(m),
        vision::VisionError::Decode(m) => GuestError::decode(m),
    }
}

fn handle(bytes: &[u8]) -> Result<Response, GuestError> {
    let t_start = Instant::now();
    let mut req: Request<'_> = edgewasm_guest::decode(bytes)?;
    let model_id = req.model_id.take().unwrap_or_else(|| DEFAULT_MODEL.to_string());
    if !KNOWN_MODELS.contains(&model_id.as_str()) {
        return Err(GuestError::not_found(format!(
            "unknown model_id {:?} (this guest runs: {})",
            model_id,
            KNOWN_MODELS.join(", ")
        )));
    }
    let top_k = req.top_k.unwrap_or(5);
    let return_logits = req.return_logits.unwrap_or(false);
    let return_tensor = req.return_tensor.unwrap_or(false);
    let input = pick_input(req)?;
    STATE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let st = &mut *guard;
        if !st.models.contains_key(&model_id) {
            let m = load_model(&model_id)?;
            st.models.insert(model_id.clone(), m);
        }
        let model = st.models.get_mut(&model_id).expect("just inserted");
        let classes = model.net.classes();
        if top_k < 1 || top_k > classes as i64 {
            return Err(GuestError::bad_request(format!(
                "top_k must be 1..{}, got {}",
                classes, top_k
            )));
        }

        // decode: image bytes -> RGB u8, or validate the given array.
        let t = Instant::now();
        let decoded;
        let pixels: Option<(vision::Pixels<'_>, usize, usize)> = match &input {
            Input::Image(b) => {
                decoded = vision::decode(b).map_err(vision_err)?;
                Some((vision::Pixels::U8(&decoded.data), decoded.width, decoded.height))
            }
            Input::Pixels(a) => {
                let data = a
                    .as_u8()
                    .map_err(|e| GuestError::bad_request(format!("pixels: {}", e.message)))?;
                if a.shape.len() != 3 || a.shape[2] != 3 {
                    return Err(GuestError::bad_request(format!(
                        "pixels must have shape [height, width, 3], got {:?}",
                        a.shape
                    )));
                }
                let (h, w) = (a.shape[0] as usize, a.shape[1] as usize);
                vision::check_size(w, h, data.len(), "pixels").map_err(vision_err)?;
                Some((vision::Pixels::U8(data), w, h))
            }
            Input::Floats(d, w, h) => Some((vision::Pixels::F32(d), *w, *h)),
            Input::Tensor(a) => {
                let ok_shape = a.shape == [SIDE as u64, SIDE as u64, 3] || a.shape == [1, SIDE as u64, SIDE as u64, 3];
                if a.dtype != "float32" || !ok_shape {
                    return Err(GuestError::bad_request(format!(
                        "tensor must be float32 [224, 224, 3] (NHWC, preprocessed), got {} {:?}",
                        a.dtype, a.shape
                    )));
                }
                let vals = a
                    .as_f32()
                    .map_err(|e| GuestError::bad_request(format!("tensor: {}", e.message)))?;
                st.input.copy_from_slice(&vals);
                None
            }
        };
        let decode_ms = ms(t);

        let t = Instant::now();
        if let Some((px, w, h)) = pixels {
            st.pre.run(px, w, h, &mut st.input).map_err(vision_err)?;
        }
        let preprocess_ms = ms(t);

        let t = Instant::now();
        let logits = model
            .net
            .forward(&st.input)
            .map_err(|e| GuestError::internal(e.to_string()))?;
        st.logits.clear();
        st.logits.extend_from_slice(logits);
        let inference_ms = ms(t);

        let t = Instant::now();
        let max = st.logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let exps: Vec<f64> = st.logits.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| {
            exps[b]
                .partial_cmp(&exps[a])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        let top: Vec<Top> = order[..top_k as usize]
            .iter()
            .map(|&c| Top {
                class_id: c as u32,
                label: model.labels[c].clone(),
                confidence: exps[c] / sum,
            })
            .collect();
        let logits_out = if return_logits {
            Some(NdArray::from_f32(vec![classes as u64], &st.logits)?)
        } else {
            None
        };
        let tensor_out = if return_tensor {
            Some(NdArray::from_f32(vec![SIDE as u64, SIDE as u64, 3], &st.input)?)
        } else {
            None
        };
        let postprocess_ms = ms(t);
        Ok(Response {
            label: top[0].label.clone(),
            confidence: top[0].confidence,
            class_id: top[0].class_id,
            latency_ms: ms(t_start),
            model_version: model.version.clone(),
            top5: top,
            stages_ms: Stages {
                decode: decode_ms,
                preprocess: preprocess_ms,
                inference: inference_ms,
                postprocess: postprocess_ms,
            },
            logits: logits_out,
            tensor: tensor_out,
        })
    })
}
