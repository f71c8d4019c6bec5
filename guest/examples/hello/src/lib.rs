//! The minimal edgewasm guest: `{"name": "Ada", "values": <float32 array>}` ->
//! `{"greeting": "hello, Ada", "sum": ..., "count": ..., "doubled": <float32 array>}`.

use edgewasm_guest::{export_infer, GuestError, NdArray};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    name: Option<String>,
    values: Option<NdArray>,
    /// Shows what a panic does: the call traps (panic = "abort"), the host raises GuestTrap.
    #[serde(default)]
    panic: bool,
}

#[derive(Serialize)]
struct Response {
    greeting: String,
    sum: f64,
    count: usize,
    doubled: Option<NdArray>,
}

fn hello(req: Request) -> Result<Response, GuestError> {
    if req.panic {
        panic!("hello was asked to panic");
    }
    let name = req.name.ok_or_else(|| GuestError::bad_request("missing `name`"))?;
    let (sum, count, doubled) = match &req.values {
        None => (0.0, 0, None),
        Some(values) => {
            let v = values.as_f32()?;
            let doubled: Vec<f32> = v.iter().map(|x| x * 2.0).collect();
            (v.iter().map(|&x| f64::from(x)).sum(), v.len(), Some(NdArray::from_f32(values.shape.clone(), &doubled)?))
        }
    };
    Ok(Response { greeting: format!("hello, {}", name), sum, count, doubled })
}

export_infer!(hello);
