//! The response map, its per-stage timing, and the postprocessing (softmax, top-k, optional arrays).

use std::time::Instant;

use edgewasm_guest::{GuestError, NdArray};
use serde::Serialize;

use crate::SIDE;

#[derive(Serialize)]
pub struct Top {
    pub class_id: u32,
    pub label: String,
    pub confidence: f64,
}

/// Milliseconds per stage of one call. `load` is the model loading this call did (0 when the instance had the
/// model already); the others run on every call.
#[derive(Serialize)]
pub struct Stages {
    pub load: f64,
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub postprocess: f64,
}

#[derive(Serialize)]
pub struct Response {
    pub label: String,
    pub confidence: f64,
    pub class_id: u32,
    pub latency_ms: f64,
    pub model_version: String,
    /// The `top_k` best classes, most probable first (as many as the request asked for).
    pub top_k: Vec<Top>,
    pub stages_ms: Stages,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<NdArray>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor: Option<NdArray>,
}

/// What the postprocess stage produced.
pub struct Outputs {
    pub top: Vec<Top>,
    pub logits: Option<NdArray>,
    pub tensor: Option<NdArray>,
}

impl Response {
    /// The response of a call that started at `start` (so `latency_ms` covers the whole call).
    pub fn new(out: Outputs, model_version: String, stages_ms: Stages, start: Instant) -> Response {
        let best = &out.top[0];
        Response {
            label: best.label.clone(),
            confidence: best.confidence,
            class_id: best.class_id,
            latency_ms: ms(start),
            model_version,
            top_k: out.top,
            stages_ms,
            logits: out.logits,
            tensor: out.tensor,
        }
    }
}

/// Milliseconds since `since`.
pub fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// `top_k` as a count of the model's `classes`.
pub fn check_top_k(top_k: i64, classes: usize) -> Result<usize, GuestError> {
    if top_k < 1 || top_k > classes as i64 {
        return Err(GuestError::bad_request(format!(
            "top_k must be 1..{}, got {}",
            classes, top_k
        )));
    }
    Ok(top_k as usize)
}

/// Softmax (in f64) and the `top_k` best classes, most probable first (ties: lower class id first); the
/// logits as an array if asked; `tensor` (the HWC network input) as an array if given.
pub fn postprocess(
    logits: &[f32],
    labels: &[String],
    top_k: usize,
    return_logits: bool,
    tensor: Option<&[f32]>,
) -> Result<Outputs, GuestError> {
    if logits.len() != labels.len() {
        return Err(GuestError::internal(format!(
            "the model gave {} scores but has {} labels",
            logits.len(),
            labels.len()
        )));
    }
    check_top_k(top_k as i64, logits.len())?;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp = |v: f32| (v as f64 - max).exp();
    let sum: f64 = logits.iter().map(|&v| exp(v)).sum();
    let order = top_classes(logits, top_k);
    let top = order
        .iter()
        .map(|&c| Top {
            class_id: c as u32,
            label: labels[c].clone(),
            confidence: exp(logits[c]) / sum,
        })
        .collect();
    let logits = if return_logits {
        Some(NdArray::from_f32(vec![logits.len() as u64], logits)?)
    } else {
        None
    };
    let tensor = match tensor {
        Some(t) => Some(NdArray::from_f32(vec![SIDE as u64, SIDE as u64, 3], t)?),
        None => None,
    };
    Ok(Outputs { top, logits, tensor })
}

/// The `k` highest scores' class ids, highest first, ties by lower class id: a total order on finite scores (the
/// pipeline refuses others first), so selecting the k and sorting only them gives what sorting all would.
fn top_classes(scores: &[f32], k: usize) -> Vec<usize> {
    let cmp = |a: &usize, b: &usize| {
        scores[*b]
            .partial_cmp(&scores[*a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k, cmp);
        order.truncate(k);
    }
    order.sort_by(cmp);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_classes_select_what_a_full_sort_gives() {
        let mut state = 12345u32;
        for n in [1usize, 2, 5, 17, 1000] {
            // few distinct values, so ties are common
            let scores: Vec<f32> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                    ((state >> 24) % 7) as f32 - 3.0
                })
                .collect();
            let mut all: Vec<usize> = (0..n).collect();
            all.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
            for k in [1, 2, 5, n] {
                if k <= n {
                    assert_eq!(top_classes(&scores, k), all[..k], "n {} k {}", n, k);
                }
            }
        }
    }

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("class {}", i)).collect()
    }

    #[test]
    fn softmax_and_top_k_most_probable_first_ties_by_class_id() {
        let logits = [1.0f32, 3.0, 3.0, -2.0];
        let out = postprocess(&logits, &labels(4), 3, true, None).unwrap();
        let ids: Vec<u32> = out.top.iter().map(|t| t.class_id).collect();
        assert_eq!(ids, [1, 2, 0]);
        let sum: f64 = logits.iter().map(|&v| f64::from(v).exp()).sum();
        assert!((out.top[0].confidence - 3f64.exp() / sum).abs() < 1e-12);
        assert_eq!(out.top[2].label, "class 0");
        assert_eq!(out.logits.unwrap().shape, [4]);
        assert!(out.tensor.is_none());
    }

    #[test]
    fn top_k_and_label_count_are_checked() {
        assert_eq!(check_top_k(0, 1000).unwrap_err().kind, "bad_request");
        assert_eq!(
            check_top_k(1001, 1000).unwrap_err().message,
            "top_k must be 1..1000, got 1001"
        );
        assert_eq!(check_top_k(1000, 1000).unwrap(), 1000);
        assert_eq!(
            postprocess(&[0.0; 3], &labels(4), 1, false, None).err().unwrap().kind,
            "internal"
        );
    }
}
