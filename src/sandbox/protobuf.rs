//! Kubernetes protobuf request bodies (`k8s\0` + `runtime.Unknown`), decoded to JSON.
//! (Filled in by the protobuf step; until then protobuf bodies are refused loudly.)

use serde_json::Value;

use super::errors::ApiError;

pub fn decode(_body: &[u8]) -> Result<Value, ApiError> {
    Err(ApiError::unsupported_media_type(
        "the sandbox cannot decode application/vnd.kubernetes.protobuf bodies yet",
    ))
}
