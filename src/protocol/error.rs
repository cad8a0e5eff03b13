//! Errors as the wire carries them: `{"error": "<message>", "code": "<code>"}`.

use bytes::Bytes;
use serde_json::json;

/// The closed set of failure codes of protocol.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    AlreadyExists,
    Conflict,
    TooLarge,
    Full,
    Forbidden,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Full => "full",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A failed command: what the client reads in `error` and `code`.
///
/// The message may name the caller's own mailbox (the caller knows it); it must never be logged
/// at info level or above, since a mail address is a credential on a broker without auth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// `mailbox A does not exist`, the reply for unknown and expired mailboxes alike.
    pub fn no_mailbox(address: &str) -> Self {
        Self::not_found(format!("mailbox {address} does not exist"))
    }

    /// The JSON reply body.
    pub fn to_reply(&self) -> Bytes {
        Bytes::from(
            json!({"error": self.message, "code": self.code.as_str()})
                .to_string()
                .into_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_carries_only_error_and_code() {
        let reply = ProtoError::no_mailbox("abc").to_reply();
        let value: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(
            value,
            json!({"error": "mailbox abc does not exist", "code": "not_found"})
        );
    }
}
