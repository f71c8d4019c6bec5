//! The pure-WebAssembly image classifier: EfficientNet-Lite0 (guest/effnet) behind the edgewasm ABI v1.
//!
//! Requests, responses, errors and stage timing are the ones every classifier guest shares (guest/classify,
//! docs/classifier.md); this crate adds what is its own: reading the EWT weights and running the network in
//! wasm. The model is read once per instance from `/models/<model_id>/`.

use std::cell::RefCell;
use std::collections::HashMap;

use classify::{store_file, vision_error, Decoded, GuestError, ModelInfo, Request, Response, HWC, STORE};
use edgewasm_guest::{export_infer_bytes, needs_models};

needs_models!();
export_infer_bytes!(handle);

/// Model ids this guest can run (its network code is EfficientNet-Lite).
const KNOWN_MODELS: &[&str] = &["efficientnet-lite0"];

struct Model {
    net: effnet::Network,
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
    STATE.with(|cell| classify::classify(&mut *cell.borrow_mut(), bytes))
}

/// Reads `/models/<id>/weights.ewt` and `labels.txt`; every failure is `model_unavailable`.
fn load_model(id: &str) -> Result<Model, GuestError> {
    let hint = classify::install_hint(id);
    if std::fs::metadata(STORE).is_err() {
        return Err(GuestError::model_unavailable(format!(
            "the model store is not mounted at {} (the host mounts it for guests that need models); {} first",
            STORE, hint
        )));
    }
    let weights_path = store_file(id, "weights.ewt");
    // Opened, not read: effnet streams each tensor from the file into its packed form (no 18.5 MB copy).
    let file = std::fs::File::open(&weights_path).map_err(|e| {
        GuestError::model_unavailable(format!(
            "model {} is not installed ({}: {}); {}",
            id, weights_path, e, hint
        ))
    })?;
    let (ewt, net) = effnet::load_file(file).map_err(|e| {
        GuestError::model_unavailable(format!("{} is unusable: {}; reinstall: {}", weights_path, e, hint))
    })?;
    let labels_path = store_file(id, "labels.txt");
    let labels = classify::read_labels(&labels_path).map_err(|e| {
        GuestError::model_unavailable(format!("model {} is incomplete ({}: {}); {}", id, labels_path, e, hint))
    })?;
    if labels.len() != net.classes() {
        return Err(GuestError::model_unavailable(format!(
            "{} has {} lines but the model has {} classes; reinstall: {}",
            labels_path,
            labels.len(),
            net.classes(),
            hint
        )));
    }
    let version = ewt.meta("version").unwrap_or("unknown").to_string();
    Ok(Model {
        net,
        info: ModelInfo { labels, version },
    })
}

impl State {
    fn model(&self) -> &Model {
        &self.models[&self.current]
    }
}

impl classify::Classifier for State {
    fn check(&self, req: &Request<'_>) -> Result<(), GuestError> {
        if req.load.is_some() {
            return Err(GuestError::bad_request(
                "load is the WASI-NN guest's option (wasinn_classifier.wasm); this guest runs the network in wasm: remove it",
            ));
        }
        classify::check_known_model(req.model_id(), KNOWN_MODELS)
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
                classify::read_f32_le(data, &mut self.input);
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
