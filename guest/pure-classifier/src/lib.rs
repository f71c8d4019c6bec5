//! The pure-WebAssembly image classifier (built into wasm/classifier.wasm, _relaxed and _scalar): EfficientNet-Lite0
//! (guest/effnet) behind the edgewasm ABI v1.
//!
//! Requests, responses, errors and stage timing are the ones every classifier guest shares (guest/classifier-common,
//! docs/classifier.md); this crate adds what is its own: reading the EWT weights and running the network in
//! wasm. A model comes from the weights a bundled module carries in its data segment (`edgewasm models
//! bundle`: mapped by wasmtime at instantiation, used in place), else from the store at `/models`, once per
//! instance: the packed image the kernels read in place, or (FP32, older stores) `weights.ewt`.

use std::cell::RefCell;
use std::collections::HashMap;

use classifier_common::{store_file, vision_error, Decoded, GuestError, ModelInfo, Request, Response, HWC, STORE};
use edgewasm_guest::{export_infer_bytes, needs_models};

needs_models!();
export_infer_bytes!(handle);

/// The relaxed-SIMD build asks the host for an engine with relaxed SIMD (`edgewasm.needs`).
#[cfg(feature = "relaxed-simd")]
#[link_section = "edgewasm.needs"]
#[used]
static NEEDS_RELAXED_SIMD: [u8; 13] = *b"relaxed-simd\n";

/// Model ids this guest can run (its network code is EfficientNet-Lite), and each one's packed image in its
/// store entry (`edgewasm models install <id>`).
const KNOWN_MODELS: &[&str] = &["efficientnet-lite0", "efficientnet-lite0-int8"];
fn image_file(id: &str) -> (String, &'static str) {
    match id {
        "efficientnet-lite0-int8" => (id.to_string(), "pure-int8.ewp"),
        _ => (id.to_string(), "pure-fp32.ewp"),
    }
}

/// Bytes reserved for the weights a bundled module carries: zero (bss) in the plain modules; `edgewasm models
/// bundle` fills it with an active data segment. 4 KiB aligned, so wasmtime maps it page by page. Its size is
/// the FP32 image's (18,557,184 bytes) rounded up to 64 KiB wasm pages: a plain module reads its first store
/// image here, so the region costs no memory beyond what the weights take anyway.
const REGION: usize = 284 << 16;
#[repr(C, align(4096))]
struct Region([u8; REGION]);
static mut WEIGHTS: Region = Region([0; REGION]);

/// Where the bundled weights go: address in the low 32 bits, size in the high ones (read by the bundler).
#[no_mangle]
pub extern "C" fn edge_weights_region() -> u64 {
    // SAFETY: only the address is taken.
    let p = unsafe { WEIGHTS.0.as_ptr() } as usize as u64;
    p | ((REGION as u64) << 32)
}

/// Set once the region holds a store image instead (a plain module: its reserved memory is not wasted).
static mut REGION_CLAIMED: bool = false;

/// The region for the first store image a module without a bundle reads, if it fits: so that the reserved
/// memory holds those weights instead of adding to them. Later images get their own buffers.
fn claim_region(len: usize) -> Option<&'static mut [u8]> {
    // SAFETY: one thread; the region is handed out at most once, and only when no bundle lives in it.
    unsafe {
        if REGION_CLAIMED || len > REGION || effnet::image::is_image(&WEIGHTS.0) {
            return None;
        }
        REGION_CLAIMED = true;
        Some(&mut WEIGHTS.0[..len])
    }
}

/// The bundled image, if this module carries one for `id`.
fn embedded(id: &str) -> Option<&'static [u8]> {
    // SAFETY: the region is written by the data segment at instantiation, or once by `claim_region` (then it
    // holds no bundle).
    if unsafe { REGION_CLAIMED } {
        return None;
    }
    let data: &'static [u8] = unsafe { &WEIGHTS.0 };
    if !effnet::image::is_image(data) {
        return None;
    }
    let img = effnet::image::Image::parse(data).ok()?;
    if img.meta("id") == Some(id) {
        Some(data)
    } else {
        None
    }
}

struct Model {
    net: effnet::Net,
    info: ModelInfo,
}

/// Per-instance state: loaded models, the current one, and the reusable buffers.
struct State {
    models: HashMap<String, Model>,
    current: String,
    pre: vision::Preprocessor,
    input: Vec<f32>,
    logits: Vec<f32>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        models: HashMap::new(),
        current: String::new(),
        pre: vision::Preprocessor::new(),
        input: vec![0.0; HWC],
        logits: Vec::new(),
    });
}

fn handle(bytes: &[u8]) -> Result<Response, GuestError> {
    STATE.with(|cell| classifier_common::classify(&mut *cell.borrow_mut(), bytes))
}

/// The model from the bundled image, else the store; every failure is `model_unavailable`.
fn load_model(id: &str) -> Result<Model, GuestError> {
    let hint = classifier_common::install_hint(id);
    if let Some(data) = embedded(id) {
        let unusable = |e: effnet::EwtError| {
            GuestError::model_unavailable(format!("the weights bundled in this module are unusable: {}; bundle again", e))
        };
        let img = effnet::image::Image::parse(data).map_err(unusable)?;
        let net = effnet::Net::from_image(&img).map_err(unusable)?;
        let labels = effnet::model::image_labels(&img).map_err(unusable)?.unwrap_or_default();
        return finish(id, net, labels, img.meta("version"), "the bundled weights", &hint);
    }
    if std::fs::metadata(STORE).is_err() {
        return Err(GuestError::model_unavailable(format!(
            "the model store is not mounted at {} (the host mounts it for guests that need models); {} first",
            STORE, hint
        )));
    }
    let (entry, file) = image_file(id);
    let image_path = store_file(&entry, file);
    let labels_path = store_file(&entry, "labels.txt");
    let read_labels = || {
        classifier_common::read_labels(&labels_path).map_err(|e| {
            GuestError::model_unavailable(format!("model {} is incomplete ({}: {}); {}", id, labels_path, e, hint))
        })
    };
    if let Ok(f) = std::fs::File::open(&image_path) {
        // Read whole into an aligned buffer and used in place: packed at install time, nothing to repack.
        let unusable = |e: effnet::EwtError| {
            GuestError::model_unavailable(format!("{} is unusable: {}; reinstall: {}", image_path, e, hint))
        };
        let img = effnet::model::read_image_into(f, claim_region).map_err(unusable)?;
        if img.meta("id") != Some(id) {
            return Err(GuestError::model_unavailable(format!(
                "{} holds model {}, not {}; reinstall: {}",
                image_path,
                img.meta("id").unwrap_or("unknown"),
                id,
                hint
            )));
        }
        let net = effnet::Net::from_image(&img).map_err(unusable)?;
        let labels = match effnet::model::image_labels(&img).map_err(unusable)? {
            Some(l) => l,
            None => read_labels()?,
        };
        return finish(id, net, labels, img.meta("version"), &image_path, &hint);
    }
    if id != "efficientnet-lite0" {
        return Err(GuestError::model_unavailable(format!(
            "model {} is not installed ({} is missing); {}",
            id, image_path, hint
        )));
    }
    // A store written before packed images: stream weights.ewt into packed panels at load.
    let weights_path = store_file(id, "weights.ewt");
    let file = std::fs::File::open(&weights_path).map_err(|e| {
        GuestError::model_unavailable(format!(
            "model {} is not installed ({}: {}); {}",
            id, weights_path, e, hint
        ))
    })?;
    let (ewt, net) = effnet::load_file(file).map_err(|e| {
        GuestError::model_unavailable(format!("{} is unusable: {}; reinstall: {}", weights_path, e, hint))
    })?;
    let labels = read_labels()?;
    finish(id, effnet::Net::Fp32(net), labels, ewt.meta("version"), &weights_path, &hint)
}

fn finish(
    id: &str,
    net: effnet::Net,
    labels: Vec<String>,
    version: Option<&str>,
    source: &str,
    hint: &str,
) -> Result<Model, GuestError> {
    if labels.len() != net.classes() {
        return Err(GuestError::model_unavailable(format!(
            "the labels of {} ({}) are {} lines but the model has {} classes; reinstall: {}",
            id,
            source,
            labels.len(),
            net.classes(),
            hint
        )));
    }
    Ok(Model {
        net,
        info: ModelInfo {
            labels,
            version: version.unwrap_or("unknown").to_string(),
        },
    })
}

impl State {
    fn model(&self) -> &Model {
        &self.models[&self.current]
    }
}

impl classifier_common::Classifier for State {
    fn check(&self, req: &Request<'_>) -> Result<(), GuestError> {
        if req.load.is_some() {
            return Err(GuestError::bad_request(
                "load is the WASI-NN guest's option (wasinn_classifier.wasm); this guest runs the network in wasm: remove it",
            ));
        }
        classifier_common::check_known_model(req.model_id(), KNOWN_MODELS)
    }

    fn load(&mut self, req: &Request<'_>) -> Result<bool, GuestError> {
        let id = req.model_id();
        let loaded = !self.models.contains_key(id);
        if loaded {
            let m = load_model(id)?;
            self.models.insert(id.to_string(), m);
        }
        if self.current != id {
            self.current = id.to_string();
        }
        Ok(loaded)
    }

    fn info(&self) -> &ModelInfo {
        &self.model().info
    }

    fn preprocess(&mut self, input: Decoded<'_>, _keep_hwc: bool) -> Result<(), GuestError> {
        match input {
            Decoded::Pixels(px, w, h) => self.pre.run(px, w, h, &mut self.input).map_err(vision_error),
            Decoded::Tensor(data) => {
                classifier_common::read_f32_le(data, &mut self.input);
                Ok(())
            }
        }
    }

    fn infer(&mut self) -> Result<(), GuestError> {
        let net = &mut self.models.get_mut(&self.current).expect("loaded before inference").net;
        let logits = net
            .forward(&self.input)
            .map_err(|e| GuestError::internal(e.to_string()))?;
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        Ok(())
    }

    fn logits(&self) -> &[f32] {
        &self.logits
    }

    fn hwc(&self) -> &[f32] {
        &self.input
    }
}
