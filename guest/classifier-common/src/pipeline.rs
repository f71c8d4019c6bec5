//! One classification call, stage by stage, for any network behind the [`Classifier`] trait: the order of the
//! checks (hence which error a bad request gets) and the timing of `stages_ms` live here, once.

use std::time::Instant;

use edgewasm_guest::GuestError;

use crate::{check_top_k, decode_input, install_hint, ms, parse, postprocess, Decoded, Input, Request, Response, Stages};

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
    check_logits(c.logits(), matches!(input, Input::Tensor(_)), req.model_id())?;
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

/// Scores that are not finite would come back as a confidence of NaN. From a `tensor` (finite, but far outside
/// the preprocessed range) that is the caller's input; from pixels, whose range is fixed, a fault of the model.
fn check_logits(logits: &[f32], from_tensor: bool, model_id: &str) -> Result<(), GuestError> {
    let (i, v) = match logits.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        None => return Ok(()),
        Some(bad) => bad,
    };
    if from_tensor {
        Err(GuestError::bad_request(format!(
            "the network's score {} is {} for this tensor (its values are far outside the preprocessed range): send (level - 127) / 128 per RGB level (values within -1..1)",
            i, v
        )))
    } else {
        Err(GuestError::internal(format!(
            "the network's score {} is {} for an image: the model is broken; reinstall: {}",
            i,
            v,
            install_hint(model_id)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_scores_are_refused() {
        assert!(check_logits(&[0.0, 1.0], true, "m").is_ok());
        let e = check_logits(&[0.0, f32::NAN], true, "m").unwrap_err();
        assert_eq!(e.kind, "bad_request");
        assert!(e.message.contains("score 1 is NaN"), "{}", e.message);
        assert_eq!(check_logits(&[f32::INFINITY], false, "m").unwrap_err().kind, "internal");
    }
}
