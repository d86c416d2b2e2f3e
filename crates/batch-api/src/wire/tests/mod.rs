//! Tests of the wire formats: request lines, result lines, Anthropic's.

mod anthropic;
mod requests;
mod results;
