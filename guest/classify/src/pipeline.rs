//! One classification call, stage by stage, for any network behind the [`Classifier`] trait: the order of the
//! checks (hence which error a bad request gets) and the timing of `stages_ms` live here, once.

use std::time::Instant;

use edgewasm_guest::GuestError;

use crate::{check_top_k, decode_input, ms, parse, postprocess, Decoded, Request, Response, Stages};

/// What the response needs from a loaded model, besides its network.
pub struct ModelInfo {
    /// One class name per logit, in class order (`labels.txt`).
    pub labels: Vec<String>,
    /// The model version reported as `model_version`.
    pub version: String,
}

/// What a guest supplies: its model loading, its network input layout and its inference.
pub trait Classifier {
    /// Checks the request's options before anything else (model id, load mode).
    fn check(&self, req: &Request<'_>) -> Result<(), GuestError>;
    /// Makes the model the request names current, loading it unless the instance has it: true if it loaded.
    fn load(&mut self, req: &Request<'_>) -> Result<bool, GuestError>;
    /// The current model's class names and version.
    fn info(&self) -> &ModelInfo;
    /// Fills the network input from the decoded input; `keep_hwc`: [`Classifier::hwc`] must then hold it.
    fn preprocess(&mut self, input: Decoded<'_>, keep_hwc: bool) -> Result<(), GuestError>;
    fn infer(&mut self) -> Result<(), GuestError>;
    fn logits(&self) -> &[f32];
    /// The network input as HWC `[224, 224, 3]` (for `return_tensor`).
    fn hwc(&self) -> &[f32];
}

/// The whole call: request bytes in, response out; `stages_ms` times load, decode, preprocess, inference
/// and postprocess, and `latency_ms` the whole of it.
pub fn classify<C: Classifier>(c: &mut C, bytes: &[u8]) -> Result<Response, GuestError> {
    let start = Instant::now();
    let mut req = parse(bytes)?;
    c.check(&req)?;
    let input = req.input()?;

    let t = Instant::now();
    let load = if c.load(&req)? { ms(t) } else { 0.0 };
    let top_k = check_top_k(req.top_k(), c.info().labels.len())?;

    let t = Instant::now();
    let mut image = None;
    let decoded = decode_input(&input, &mut image)?;
    let decode = ms(t);

    let t = Instant::now();
    c.preprocess(decoded, req.return_tensor())?;
    let preprocess = ms(t);

    let t = Instant::now();
    c.infer()?;
    let inference = ms(t);

    let t = Instant::now();
    let hwc = if req.return_tensor() { Some(c.hwc()) } else { None };
    let out = postprocess(c.logits(), &c.info().labels, top_k, req.return_logits(), hwc)?;
    let stages = Stages {
        load,
        decode,
        preprocess,
        inference,
        postprocess: ms(t),
    };
    Ok(Response::new(out, c.info().version.clone(), stages, start))
}
