//! Model ids and the model store the host mounts at `/models` (`/models/<id>/labels.txt` etc.).

use edgewasm_guest::GuestError;

pub const DEFAULT_MODEL: &str = "efficientnet-lite0";
pub const STORE: &str = "/models";

/// `/models/<id>/<name>`.
pub fn store_file(id: &str, name: &str) -> String {
    format!("{}/{}/{}", STORE, id, name)
}

/// How the user installs a model, for error messages.
pub fn install_hint(id: &str) -> String {
    format!("run `edgewasm models install {}`", id)
}

/// Longest model id accepted.
pub const MAX_MODEL_ID: usize = 128;

/// A model id that is safe as one path component: 1..=[`MAX_MODEL_ID`] ASCII letters, digits, `-`, `_`, `.`,
/// not starting with `.`.
pub fn check_model_id(id: &str) -> Result<(), GuestError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_MODEL_ID
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(GuestError::bad_request(format!(
            "model_id {} is not a valid model id (1..{} ASCII letters, digits, '-', '_', '.'; e.g. \"{}\")",
            crate::shown(id),
            MAX_MODEL_ID,
            DEFAULT_MODEL
        )))
    }
}

/// A model id from a guest's fixed list (`not_found` otherwise).
pub fn check_known_model(id: &str, known: &[&str]) -> Result<(), GuestError> {
    if known.contains(&id) {
        Ok(())
    } else {
        Err(GuestError::not_found(format!(
            "unknown model_id {} (this guest runs: {})",
            crate::shown(id),
            known.join(", ")
        )))
    }
}

/// `labels.txt`: one class name a line, in class order (CRLF tolerated).
pub fn read_labels(path: &str) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids() {
        assert!(check_model_id("efficientnet-lite0").is_ok());
        let long = "m".repeat(MAX_MODEL_ID + 1);
        for bad in ["", "../etc", ".hidden", "a/b", "a b", long.as_str()] {
            assert_eq!(check_model_id(bad).unwrap_err().kind, "bad_request", "{:?}", bad);
        }
        assert_eq!(
            check_known_model("resnet-50", &["efficientnet-lite0"])
                .unwrap_err()
                .kind,
            "not_found"
        );
        assert_eq!(store_file("m", "labels.txt"), "/models/m/labels.txt");
        let message = check_model_id(&long).unwrap_err().message;
        assert!(message.len() < 200 && message.contains("mmm\"..."), "{}", message);
    }
}
