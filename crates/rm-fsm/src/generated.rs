//! Generated documents (a table's markdown) kept in step with the code.

/// Keeps a generated file (a table's markdown) in step with the code, for a test that
/// guards it: with the environment variable `RM_UPDATE_FSM_DOCS` set, writes `contents` to
/// `path`; otherwise fails with a message naming the file when it differs.
pub fn check_generated(path: &std::path::Path, contents: &str) -> Result<(), String> {
    if std::env::var_os("RM_UPDATE_FSM_DOCS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()));
    }
    match std::fs::read_to_string(path) {
        Ok(actual) if actual == contents => Ok(()),
        _ => Err(format!(
            "{} is stale: run `cargo xtask fsm-docs`",
            path.display()
        )),
    }
}
