//! Reading a batch input file: validation like the real API, then the fake
//! model's outcome for every request. Lines are parsed with borrowed serde
//! structs because `--instant` benchmarks push millions of lines through here.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::body::{read_anthropic_params, read_body, string, BatchError, Endpoint, UrlStyle};
use super::faults::{Faults, RequestFault};
use super::model::{run, Outcome, Req, Task};
use crate::util::{h64, strip_tag};

/// Most requests per input file.
pub(crate) const MAX_TASKS: usize = 50_000;
/// Most requests per Azure OpenAI input file.
pub(crate) const MAX_TASKS_AZURE: usize = 100_000;
/// Most requests per Anthropic message batch.
pub(crate) const MAX_TASKS_ANTHROPIC: usize = 100_000;
/// Most validation errors reported for one file.
const MAX_ERRORS: usize = 1_000;

/// Which line format the file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{"custom_id","method","url","body"}` for one endpoint. `azure`: made
    /// through the `/openai/...` routes (100,000 lines allowed).
    OpenAi(Endpoint, UrlStyle, bool),
    /// The generic protocol: `{"custom_id","input": <chat or embeddings body>}`.
    Generic,
    /// Anthropic Message Batches: `{"custom_id","params": <Messages request>}`
    /// (the create call's `requests`, one per line). Requests are checked
    /// at create; bad `params` become `errored` results, never a failed batch.
    Anthropic,
}

impl Flavor {
    pub(crate) fn is_openai(self) -> bool {
        matches!(self, Flavor::OpenAi(..))
    }

    /// The line `url` every request must carry (OpenAI flavor).
    pub(crate) fn url(self) -> Option<&'static str> {
        match self {
            Flavor::OpenAi(e, UrlStyle::V1, _) => Some(e.path()),
            Flavor::OpenAi(e, UrlStyle::Bare, _) => Some(e.bare_path()),
            _ => None,
        }
    }
}

/// Per-request fault context.
pub(crate) struct Exec<'a> {
    pub faults: &'a Faults,
    pub pipeline: &'a str,
    /// Times each (pipeline, custom_id) was executed before, by hash.
    pub seen: &'a mut HashMap<u64, u32>,
    pub injected_4xx: u64,
    pub injected_5xx: u64,
    /// Anthropic flavor (custom_ids carry a batch tag).
    pub anthropic: bool,
}

pub(crate) struct Parsed {
    pub tasks: Vec<Task>,
    /// The file's model (OpenAI flavor), for `Batch.model`.
    pub model: Option<String>,
}

struct Line<'a> {
    custom_id: Cow<'a, str>,
    model: Cow<'a, str>,
    req: Req<'a>,
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow, default)]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Validates every line; on success executes every request with the fake
/// model (only validates when `exec` is None).
pub(crate) fn parse(
    flavor: Flavor,
    bytes: &[u8],
    exec: Option<&mut Exec<'_>>,
) -> Result<Parsed, Vec<BatchError>> {
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count();
    if lines == 0 {
        let msg = "The batch input file is empty. Please ensure that the batch contains at least one request.";
        return Err(vec![BatchError::new("empty_file", msg, None, None)]);
    }
    let max = match flavor {
        Flavor::OpenAi(_, _, true) => MAX_TASKS_AZURE,
        Flavor::Anthropic => MAX_TASKS_ANTHROPIC,
        _ => MAX_TASKS,
    };
    if lines > max {
        let msg = format!(
            "The batch input file is larger than the {max} maximum for the batch API. Please limit the \
             number of input requests in the batch input file to no more than {max}."
        );
        return Err(vec![BatchError::new("too_many_tasks", msg, None, None)]);
    }
    let generic = flavor == Flavor::Generic;
    let anthropic = flavor == Flavor::Anthropic;
    let want = match flavor {
        Flavor::OpenAi(e, ..) => Some(e),
        Flavor::Generic | Flavor::Anthropic => None,
    };
    let mut errors = Vec::new();
    let mut parsed: Vec<Line> = Vec::with_capacity(lines);
    let mut ids: HashSet<Cow<str>> = HashSet::with_capacity(lines);
    let mut file_model: Option<Cow<str>> = None;
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let n = Some(i as u64 + 1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.trim_ascii().is_empty() {
            continue;
        }
        let line: RawLine = match serde_json::from_slice(raw) {
            Ok(l) => l,
            Err(_) => {
                errors.push(BatchError::new(
                    "invalid_json_line",
                    "This line is not parseable as valid JSON.",
                    None,
                    n,
                ));
                continue;
            }
        };
        let mut fail = |code: &str, msg: String, param: &str| {
            errors.push(BatchError::new(code, msg, Some(param), n))
        };
        let missing = |p: &str| format!("Missing required parameter: '{p}'.");
        let Some(custom_id) = string(line.custom_id) else {
            fail(
                "missing_required_parameter",
                missing("custom_id"),
                "custom_id",
            );
            continue;
        };
        if anthropic {
            // Shape problems were refused at create; what is left is per
            // request: invalid params become errored results.
            let (model, req) = read_anthropic_params(line.params);
            parsed.push(Line {
                custom_id,
                model,
                req,
            });
            continue;
        }
        let body = if generic {
            match line.input {
                Some(b) => b,
                None => {
                    let req = Req::Invalid {
                        message: missing("input"),
                        param: "input",
                    };
                    parsed.push(Line {
                        custom_id,
                        model: Cow::Borrowed("mock-model"),
                        req,
                    });
                    continue;
                }
            }
        } else {
            let Some(method) = string(line.method) else {
                fail("missing_required_parameter", missing("method"), "method");
                continue;
            };
            if method != "POST" {
                fail(
                    "invalid_request",
                    format!("Invalid method '{method}'. Only POST is supported."),
                    "method",
                );
                continue;
            }
            let Some(url) = string(line.url) else {
                fail("missing_required_parameter", missing("url"), "url");
                continue;
            };
            if flavor.url() != Some(&*url) {
                let msg = "The URL provided for this request does not match the batch endpoint."
                    .to_string();
                fail("invalid_url", msg, "url");
                continue;
            }
            let Some(body) = line.body else {
                fail("missing_required_parameter", missing("body"), "body");
                continue;
            };
            body
        };
        let (model, req) = match read_body(body, want, generic) {
            Ok(x) => x,
            Err(mut e) => {
                e.line = n;
                errors.push(e);
                continue;
            }
        };
        if !generic {
            match &file_model {
                None => file_model = Some(model.clone()),
                Some(m) if *m != model => {
                    let msg = format!(
                        "The provided model '{model}' does not match the model '{m}' used by the other requests \
                         in the file. All requests in a batch must use the same model."
                    );
                    errors.push(BatchError::new(
                        "model_mismatch",
                        msg,
                        Some("body.model"),
                        n,
                    ));
                    continue;
                }
                Some(_) => {}
            }
        }
        // cloning a borrowed Cow is free; only escaped ids allocate
        if !ids.insert(custom_id.clone()) {
            let msg =
                "The custom_id for this request is a duplicate of another request. The custom_id \
                       parameter must be unique for each request in a batch.";
            errors.push(BatchError::new(
                "duplicate_custom_id",
                msg,
                Some("custom_id"),
                n,
            ));
            continue;
        }
        parsed.push(Line {
            custom_id,
            model,
            req,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    drop(ids);
    let tasks = match exec {
        Some(exec) => execute(parsed, exec),
        None => Vec::new(),
    };
    Ok(Parsed {
        tasks,
        model: file_model.map(Cow::into_owned),
    })
}

/// Runs the fake model on validated lines, applying per-request faults.
fn execute(lines: Vec<Line<'_>>, exec: &mut Exec<'_>) -> Vec<Task> {
    let mut last_model: Arc<str> = Arc::from("");
    let faulty = exec.faults.request_faults_on();
    lines
        .into_iter()
        .map(|line| {
            if *last_model != *line.model {
                last_model = Arc::from(&*line.model);
            }
            let fault = if faulty {
                // Anthropic ids carry a batch tag: decide by the public id,
                // so a request retried in a later batch is the same request.
                let id = if exec.anthropic { strip_tag(&line.custom_id) } else { &line.custom_id };
                let seen = exec.seen.entry(h64(&[exec.pipeline.as_bytes(), id.as_bytes()])).or_default();
                let f = exec.faults.request(exec.pipeline, id, *seen);
                *seen += 1;
                f
            } else {
                RequestFault::None
            };
            let param = |req: &Req| if matches!(req, Req::Embed { .. }) { "input" } else { "messages" };
            let outcome = match fault {
                RequestFault::Client4xx => {
                    exec.injected_4xx += 1;
                    Outcome::Error {
                        status: 400,
                        kind: "invalid_request_error",
                        code: Some("context_length_exceeded"),
                        param: Some(param(&line.req)),
                        message: "This model's maximum context length is 128000 tokens. However, your messages \
                                  resulted in 131072 tokens. Please reduce the length of the messages."
                            .into(),
                    }
                }
                RequestFault::Server5xx => {
                    exec.injected_5xx += 1;
                    Outcome::Error {
                        status: 500,
                        kind: "server_error",
                        code: None,
                        param: None,
                        message: "The server had an error while processing your request. Sorry about that!".into(),
                    }
                }
                RequestFault::None => run(&line.model, &line.req),
            };
            Task { custom_id: line.custom_id.into_owned(), model: last_model.clone(), outcome }
        })
        .collect()
}
