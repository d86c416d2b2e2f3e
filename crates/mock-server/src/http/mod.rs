//! The HTTP layer every protocol shares: error envelopes, the layers each
//! call goes through, and common request pieces. Knows no protocol's
//! objects.

pub(crate) mod common;
pub(crate) mod error;
pub(crate) mod layers;
