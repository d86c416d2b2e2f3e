//! Wire formats: building request lines and parsing result lines.
//!
//! This is the hot path (hundreds of thousands of records per second):
//! request lines are assembled from bytes precomputed once per pipeline
//! ([`RequestTemplate`]), and result lines are parsed into borrowed structs
//! with `&RawValue` for the prediction, so that nothing is unescaped,
//! re-escaped or allocated per record unless the provider's text forces it
//! (an escaped custom_id or error message becomes an owned `Cow`).

use std::borrow::Cow;

use serde_json::value::RawValue;

mod anthropic;
mod de;
mod generic;
mod openai;

pub use anthropic::{strip_batch_tag, BATCH_TAG_SEPARATOR};

/// What the requests ask the model for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Chat completions: the record's input is the user message; the
    /// prediction is the answer's text (a JSON string).
    Chat,
    /// Embeddings: the record's input is embedded; the prediction is the
    /// vector (a JSON array).
    Embeddings,
}

/// The shape of request and result lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// OpenAI Batch API lines (OpenAI, Azure OpenAI, Groq, compatible
    /// servers): `{"custom_id","method","url","body"}`.
    OpenAi,
    /// The FLIP's example protocol (PROVIDERS.md §8): `{"custom_id","input"}`.
    Generic,
    /// Anthropic Message Batches (PROVIDERS.md §6): lines
    /// `{"custom_id","params":{model,max_tokens,system?,temperature?,messages}}`
    /// (the Anthropic client joins them into the create call's `requests`
    /// array), results `{"custom_id","result":{"type",…}}`. Chat only.
    Anthropic,
}

/// Per-pipeline precomputed bytes of a request line.
///
/// A line is `head ++ custom_id ++ mid ++ input_json ++ tail`, where `mid`
/// ends with the body's opening bytes and `tail` starts with the body's
/// closing bytes, so the synchronous body is a slice of each.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestTemplate {
    format: WireFormat,
    task: Task,
    /// `","method":"POST","url":"…","body":{"model":…,"content":` (OpenAI),
    /// `","params":{"model":…,"messages":[{"role":"user","content":`
    /// (Anthropic).
    mid: Vec<u8>,
    /// Where the body starts inside `mid`.
    body_start: usize,
    /// `}],"temperature":…}}\n` (OpenAI chat).
    tail: Vec<u8>,
}

/// Every request line starts with these bytes, then the custom_id.
pub const LINE_HEAD: &[u8] = br#"{"custom_id":""#;

/// `max_tokens` of Anthropic requests when none is configured (the Messages
/// API requires it).
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 1024;
/// The bytes after the body: the closing brace of the line and the newline.
const LINE_END: &[u8] = b"}\n";

impl RequestTemplate {
    /// Build the template once. `request_path` is the endpoint path put into
    /// OpenAI lines (`"/v1/chat/completions"`; Azure: `"/chat/completions"`);
    /// `system_prompt`, `temperature` and `max_tokens` apply to chat only.
    ///
    /// Anthropic is chat only (`task` is ignored): `system` is the
    /// top-level `system` field, and `max_tokens`, which the Messages API
    /// requires, defaults to [`ANTHROPIC_DEFAULT_MAX_TOKENS`].
    pub fn new(
        format: WireFormat,
        task: Task,
        request_path: &str,
        model: &str,
        system_prompt: Option<&str>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
    ) -> Self {
        if format == WireFormat::Anthropic {
            return Self::anthropic(model, system_prompt, temperature, max_tokens);
        }
        let mut mid = Vec::with_capacity(256);
        mid.extend_from_slice(b"\",");
        match format {
            WireFormat::OpenAi => {
                mid.extend_from_slice(br#""method":"POST","url":"#);
                push_json_str(&mut mid, request_path);
                mid.extend_from_slice(br#","body":"#);
            }
            WireFormat::Generic => mid.extend_from_slice(br#""input":"#),
            WireFormat::Anthropic => unreachable!("built by Self::anthropic"),
        }
        let body_start = mid.len();
        mid.extend_from_slice(br#"{"model":"#);
        push_json_str(&mut mid, model);
        let mut tail = Vec::with_capacity(64);
        match task {
            Task::Chat => {
                mid.extend_from_slice(br#","messages":["#);
                if let Some(system) = system_prompt {
                    mid.extend_from_slice(br#"{"role":"system","content":"#);
                    push_json_str(&mut mid, system);
                    mid.extend_from_slice(b"},");
                }
                mid.extend_from_slice(br#"{"role":"user","content":"#);
                tail.extend_from_slice(b"}]");
                if let Some(t) = temperature {
                    tail.extend_from_slice(br#","temperature":"#);
                    // serde_json writes NaN/inf as null; the config should
                    // have refused those already.
                    tail.extend_from_slice(
                        serde_json::to_string(&t).unwrap_or_default().as_bytes(),
                    );
                }
                if let Some(m) = max_tokens {
                    tail.extend_from_slice(br#","max_tokens":"#);
                    tail.extend_from_slice(m.to_string().as_bytes());
                }
            }
            Task::Embeddings => mid.extend_from_slice(br#","input":"#),
        }
        tail.extend_from_slice(b"}");
        tail.extend_from_slice(LINE_END);
        Self {
            format,
            task,
            mid,
            body_start,
            tail,
        }
    }

    /// `{"custom_id":"…","params":{"model":…,"max_tokens":…,"system":…,
    /// "temperature":…,"messages":[{"role":"user","content":<input>}]}}`.
    fn anthropic(
        model: &str,
        system_prompt: Option<&str>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
    ) -> Self {
        let mut mid = Vec::with_capacity(256);
        mid.extend_from_slice(br#"","params":"#);
        let body_start = mid.len();
        mid.extend_from_slice(br#"{"model":"#);
        push_json_str(&mut mid, model);
        mid.extend_from_slice(br#","max_tokens":"#);
        mid.extend_from_slice(
            max_tokens
                .unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS)
                .to_string()
                .as_bytes(),
        );
        if let Some(system) = system_prompt {
            mid.extend_from_slice(br#","system":"#);
            push_json_str(&mut mid, system);
        }
        if let Some(t) = temperature {
            mid.extend_from_slice(br#","temperature":"#);
            mid.extend_from_slice(serde_json::to_string(&t).unwrap_or_default().as_bytes());
        }
        mid.extend_from_slice(br#","messages":[{"role":"user","content":"#);
        let mut tail = Vec::with_capacity(8);
        tail.extend_from_slice(b"}]}");
        tail.extend_from_slice(LINE_END);
        Self {
            format: WireFormat::Anthropic,
            task: Task::Chat,
            mid,
            body_start,
            tail,
        }
    }

    /// Add `,"name":value` for each field to the request body, after the
    /// fields [`new`](Self::new) writes (sampling options such as `top_p`,
    /// `stop`, `seed`, `dimensions`, named as the provider names them).
    pub fn with_body_fields(mut self, fields: &[(&str, serde_json::Value)]) -> Self {
        let at = self.tail.len() - LINE_END.len() - 1;
        let mut extra = Vec::new();
        for (name, value) in fields {
            extra.push(b',');
            push_json_str(&mut extra, name);
            extra.push(b':');
            serde_json::to_writer(&mut extra, value).expect("a value into a vec");
        }
        self.tail.splice(at..at, extra);
        self
    }

    pub fn format(&self) -> WireFormat {
        self.format
    }

    pub fn task(&self) -> Task {
        self.task
    }

    /// Append one request line (ending in `'\n'`) to `out`.
    ///
    /// `input_json` is the record's input field exactly as it appears in the
    /// record — for a string, the JSON literal with its quotes and escapes —
    /// and is copied through unchanged. `custom_id` must match
    /// `^[A-Za-z0-9_-]{1,64}$` (not escaped). Allocates only when `out` must
    /// grow.
    #[inline]
    pub fn write_line(&self, out: &mut Vec<u8>, custom_id: &str, input_json: &[u8]) {
        debug_assert!(
            is_valid_custom_id(custom_id),
            "invalid custom_id {custom_id:?}"
        );
        debug_assert!(!input_json.is_empty(), "empty input json");
        out.reserve(self.line_len(custom_id, input_json));
        out.extend_from_slice(LINE_HEAD);
        out.extend_from_slice(custom_id.as_bytes());
        out.extend_from_slice(&self.mid);
        out.extend_from_slice(input_json);
        out.extend_from_slice(&self.tail);
    }

    /// The exact length [`write_line`](Self::write_line) would append.
    #[inline]
    pub fn line_len(&self, custom_id: &str, input_json: &[u8]) -> usize {
        LINE_HEAD.len() + custom_id.len() + self.mid.len() + input_json.len() + self.tail.len()
    }

    /// Append the synchronous request body (batch mode off): the same body
    /// object as in a line, alone, without a newline.
    #[inline]
    pub fn write_sync_body(&self, out: &mut Vec<u8>, input_json: &[u8]) {
        let head = &self.mid[self.body_start..];
        let tail = &self.tail[..self.tail.len() - LINE_END.len()];
        out.reserve(head.len() + input_json.len() + tail.len());
        out.extend_from_slice(head);
        out.extend_from_slice(input_json);
        out.extend_from_slice(tail);
    }
}

impl std::fmt::Debug for RequestTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTemplate")
            .field("format", &self.format)
            .field("task", &self.task)
            .field("mid", &String::from_utf8_lossy(&self.mid))
            .field("tail", &String::from_utf8_lossy(&self.tail))
            .finish()
    }
}

/// `^[A-Za-z0-9_-]{1,64}$`, the custom_id shape every provider accepts.
pub fn is_valid_custom_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // One-time escape at template build; serializing a &str cannot fail.
    serde_json::to_writer(&mut *out, s).expect("serializing a str into a Vec cannot fail");
}

/// What became of one request.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    Ok {
        /// Chat: `choices[0].message.content` (a JSON string literal, still
        /// escaped); embeddings: `data[0].embedding` (an array); generic:
        /// `output`; Anthropic: the first text block's `text`. Write it into
        /// the output record as is.
        prediction: &'a RawValue,
        total_tokens: Option<u64>,
    },
    Failed {
        code: Cow<'a, str>,
        message: Cow<'a, str>,
        /// Worth sending again in a later batch (5xx, 408, 429, expired,
        /// cancelled); otherwise the record is emitted with the error.
        retriable: bool,
    },
}

/// Predictions compare by their JSON text.
impl PartialEq for Outcome<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Outcome::Ok {
                    prediction: a,
                    total_tokens: ta,
                },
                Outcome::Ok {
                    prediction: b,
                    total_tokens: tb,
                },
            ) => a.get() == b.get() && ta == tb,
            (
                Outcome::Failed {
                    code: ca,
                    message: ma,
                    retriable: ra,
                },
                Outcome::Failed {
                    code: cb,
                    message: mb,
                    retriable: rb,
                },
            ) => ca == cb && ma == mb && ra == rb,
            _ => false,
        }
    }
}

impl Outcome<'_> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
}

/// One parsed result line.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine<'a> {
    pub custom_id: Cow<'a, str>,
    pub outcome: Outcome<'a>,
}

/// A result line that cannot be understood at all (not JSON, no custom_id).
/// A well-formed line with an unexpected body is an [`Outcome::Failed`]
/// with code `unexpected_response` instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed result line: {0}")]
pub struct WireError(pub String);

/// Code of the failure when a 2xx body lacks the expected field.
pub const UNEXPECTED_RESPONSE: &str = "unexpected_response";

/// Parse one result line (without or with its trailing newline).
pub fn parse_result_line<'a>(
    format: WireFormat,
    task: Task,
    line: &'a [u8],
) -> Result<ResultLine<'a>, WireError> {
    match format {
        WireFormat::OpenAi => openai::parse(task, line),
        WireFormat::Generic => generic::parse(line),
        WireFormat::Anthropic => anthropic::parse(line),
    }
}

/// [`parse_result_line`] from text: the same result, but `serde_json` does
/// not check the UTF-8 of every borrowed string again (validate the whole
/// download once, then parse its lines with this).
pub fn parse_result_str<'a>(
    format: WireFormat,
    task: Task,
    line: &'a str,
) -> Result<ResultLine<'a>, WireError> {
    match format {
        WireFormat::OpenAi => openai::parse_str(task, line),
        WireFormat::Generic => generic::parse_str(line),
        WireFormat::Anthropic => anthropic::parse_str(line),
    }
}

/// Whether an HTTP status of a single request is worth retrying in a later
/// batch: 408, 429 and 5xx.
pub fn is_retriable_http_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Whether a provider's error code for a single request looks retriable:
/// expired or cancelled requests, timeouts, server errors, rate limits,
/// and codes that are themselves a retriable HTTP status ("503",
/// "http_503").
pub fn is_retriable_error_code(code: &str) -> bool {
    let c = code.trim().to_ascii_lowercase();
    let digits = c.trim_start_matches("http_").trim_start_matches("http ");
    if let Ok(n) = digits.parse::<u16>() {
        return is_retriable_http_status(n);
    }
    const WORDS: &[&str] = &[
        "expired",
        "cancel",
        "timeout",
        "timed_out",
        "server_error",
        "internal_error",
        "internal_server_error",
        "unavailable",
        "overloaded",
        "rate_limit",
        "bad_gateway",
        "gateway",
    ];
    WORDS.iter().any(|w| c.contains(w))
}

/// Split a buffer of JSONL into non-blank lines (a trailing `'\r'` removed).
pub fn split_lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Some(line);
        }
    })
}

/// [`split_lines`] for text.
pub fn split_str_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        // '\n' is ASCII, so both slices stay on char boundaries.
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.bytes().all(|b| b.is_ascii_whitespace()) {
            return Some(line);
        }
    })
}

/// Streaming normaliser for result downloads: passes JSONL through, and
/// turns a top-level JSON array (`[{…},{…}]`, possibly pretty-printed) into
/// one element per line. Whitespace outside strings inside an element is
/// dropped, which never changes a JSON value. O(1) state, chunk boundaries
/// anywhere.
#[derive(Debug, Default)]
pub struct JsonLinesNormalizer {
    /// Decided after the first non-whitespace byte.
    mode: Option<NormMode>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Something was written since the last newline (array mode).
    open_line: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NormMode {
    PassThrough,
    Array,
    /// The closing bracket of the top-level array was seen.
    ArrayDone,
}

impl JsonLinesNormalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append the normalised form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut chunk = chunk;
        if self.mode.is_none() {
            let Some(i) = chunk.iter().position(|b| !b.is_ascii_whitespace()) else {
                return;
            };
            // Skip a UTF-8 byte order mark too.
            let rest = &chunk[i..];
            let rest = rest.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(rest);
            if rest.is_empty() {
                return;
            }
            if rest[0] == b'[' {
                self.mode = Some(NormMode::Array);
                chunk = &rest[1..];
            } else {
                self.mode = Some(NormMode::PassThrough);
                chunk = rest;
            }
        }
        match self.mode {
            Some(NormMode::PassThrough) => out.extend_from_slice(chunk),
            Some(NormMode::ArrayDone) | None => {}
            Some(NormMode::Array) => self.push_array(chunk, out),
        }
    }

    fn push_array(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len());
        for &b in chunk {
            if self.in_string {
                out.push(b);
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'"' => {
                    self.in_string = true;
                    self.open_line = true;
                    out.push(b);
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    self.open_line = true;
                    out.push(b);
                }
                b'}' | b']' if self.depth == 0 => {
                    // The end of the top-level array.
                    self.finish_line(out);
                    self.mode = Some(NormMode::ArrayDone);
                    return;
                }
                b'}' | b']' => {
                    self.depth -= 1;
                    out.push(b);
                }
                b',' if self.depth == 0 => self.finish_line(out),
                _ => {
                    self.open_line = true;
                    out.push(b);
                }
            }
        }
    }

    fn finish_line(&mut self, out: &mut Vec<u8>) {
        if self.open_line {
            out.push(b'\n');
            self.open_line = false;
        }
    }

    /// Call after the last chunk: ends an unterminated last line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.mode == Some(NormMode::Array) {
            self.finish_line(out);
        }
    }
}

#[cfg(test)]
mod tests;
