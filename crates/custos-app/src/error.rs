//! The application's one error type, classified by who is at fault, so the CLI and the server
//! map it the same way: to exit codes (`0` ok, `1` run failed, `2` invalid, `3` denied) and to
//! HTTP statuses.

/// Why an operation did not succeed. Messages never contain tokens, keys, passphrases or cell
/// values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// Sign-in failed (no, unknown, rotated or disabled credential, or locked out).
    #[error("{0}")]
    Unauthenticated(String),
    /// Signed in, but a policy (or a server rule such as path confinement of the caller's
    /// role) does not allow it.
    #[error("{0}")]
    Denied(String),
    /// The request is malformed or names something invalid (config errors, bad paths,
    /// secret references outside the allowlist).
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A pipeline ran and failed (nothing was committed).
    #[error("{0}")]
    RunFailed(String),
    /// A bug or an environment failure (disk, database); the details are in the server log.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// The CLI exit code: 1 run failed or internal, 2 invalid or not found, 3 not signed in or
    /// denied.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::RunFailed(_) | AppError::Internal(_) => 1,
            AppError::Invalid(_) | AppError::NotFound(_) => 2,
            AppError::Unauthenticated(_) | AppError::Denied(_) => 3,
        }
    }

    /// The HTTP status: 401, 403, 422, 404, 500 (a failed run is a 500 only when asked for
    /// synchronously; run jobs report failure in their body).
    pub fn http_status(&self) -> u16 {
        match self {
            AppError::Unauthenticated(_) => 401,
            AppError::Denied(_) => 403,
            AppError::Invalid(_) => 422,
            AppError::NotFound(_) => 404,
            AppError::RunFailed(_) | AppError::Internal(_) => 500,
        }
    }

    /// A stable machine-readable code for API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "unauthenticated",
            AppError::Denied(_) => "denied",
            AppError::Invalid(_) => "invalid",
            AppError::NotFound(_) => "not_found",
            AppError::RunFailed(_) => "run_failed",
            AppError::Internal(_) => "internal",
        }
    }

    /// Wraps an environment failure with what was being done.
    pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        AppError::Internal(format!("{context}: {e}"))
    }
}

/// Results of the application layer.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_statuses_follow_the_fault() {
        let cases = [
            (AppError::Unauthenticated("x".into()), 3, 401),
            (AppError::Denied("x".into()), 3, 403),
            (AppError::Invalid("x".into()), 2, 422),
            (AppError::NotFound("x".into()), 2, 404),
            (AppError::RunFailed("x".into()), 1, 500),
            (AppError::Internal("x".into()), 1, 500),
        ];
        for (e, code, status) in cases {
            assert_eq!(e.exit_code(), code, "{e:?}");
            assert_eq!(e.http_status(), status, "{e:?}");
        }
    }
}
