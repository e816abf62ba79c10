//! The custos engine: turns a validated pipeline config into DataFusion tables and plans,
//! runs it with quarantine and all-or-none sink commits, checks the row-count invariant and
//! records the run in the state store.
//!
//! Each component becomes a table in one DataFusion session, named after the component:
//! sources are streaming tables, `sql` transforms are views over their inputs, `validate`
//! transforms are a [`exec::MapExec`] over their input's plan. Every component table counts
//! its rows and is executed exactly once ([`component::ComponentTable`]).

pub mod component;
pub mod exec;
mod gate;
mod plan;
pub mod protect;
pub mod provenance;
mod reject;
pub mod rewrap;
mod run;
pub mod scan;
pub mod state;
pub mod validate;

pub use plan::check;
pub use run::{
    CancellationToken, OutputFile, Progress, RunAuthorizer, RunFailure, RunOptions, RunOutcome,
    RunStatus, RunSummary, run,
};
pub use state::{
    ComponentCounts, FileRecord, RunRecord, StateStore, create_private_dir, host_name,
};

/// Engine errors. Messages never contain cell values or secrets.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The config has errors; see the diagnostics.
    #[error("the pipeline config has {} error(s)", .0.error_count())]
    Config(custos_config::Diagnostics),
    /// The state store failed.
    #[error("state store: {0}")]
    State(String),
    /// Local I/O failed.
    #[error("{0}")]
    Io(String),
}

/// Finds the state directory: `$CUSTOS_STATE_DIR`, else the nearest `.custos` directory in the
/// current directory or its parents, else `./.custos`.
pub fn default_state_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("CUSTOS_STATE_DIR")
        && !d.is_empty()
    {
        return d.into();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    for dir in cwd.ancestors() {
        let candidate = dir.join(".custos");
        if candidate.join("state.db").is_file() {
            return candidate;
        }
    }
    cwd.join(".custos")
}

/// Hides values DataFusion may quote in execution errors (e.g. a failed cast names the text
/// it could not cast), so that error messages never carry cell data.
pub fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for ch in msg.chars() {
        if ch == '\'' {
            if in_quote {
                out.push_str("<redacted>'");
            } else {
                out.push('\'');
            }
            in_quote = !in_quote;
        } else if !in_quote {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_quoted_values() {
        assert_eq!(
            super::redact_values("Cannot cast string '4111 1111' to value of Int64 type"),
            "Cannot cast string '<redacted>' to value of Int64 type"
        );
    }
}
