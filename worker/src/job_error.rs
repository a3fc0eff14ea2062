//! [`JobError`]: what a handler returns when it fails, saying whether another attempt
//! could succeed. Below both the handler and its context, which each speak of it.

use std::fmt;

/// Why a handler failed, and whether another attempt could succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    message: String,
    permanent: bool,
}

impl JobError {
    /// A failure worth retrying (a timeout upstream, a busy resource): the scheduler
    /// retries the job with backoff until its attempts run out.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix (bad input): the job goes straight to the dead letters.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }

    /// Whether retrying is pointless.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The handler's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// A payload that does not parse will not parse on the next attempt either: permanent.
impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        Self::permanent(format!("payload is not the expected JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_errors_say_whether_to_retry() {
        let e = JobError::retryable("busy");
        assert!(!e.is_permanent());
        assert_eq!(e.to_string(), "busy");
        assert!(JobError::permanent("bad").is_permanent());
        let parse: JobError = serde_json::from_str::<u32>("x")
            .expect_err("not json")
            .into();
        assert!(parse.is_permanent());
        assert!(parse.message().contains("expected JSON"), "{parse}");
    }
}
