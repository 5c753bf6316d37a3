//! Event bodies: `decode` (simd-json → borrowed event views whose property values are
//! the client's raw JSON text) and `validate` (the field rules of DECISIONS.md).

pub mod decode;
pub mod validate;
