use super::*;
use crate::wire::UNEXPECTED_RESPONSE;

fn client(task: Task, format: WireFormat) -> Client {
    Client::new(&Settings {
        endpoint: "http://127.0.0.1:9/v1/chat/completions",
        api_key: Some("sk-secret"),
        auth: Auth::Bearer,
        pipeline: "p",
        output_field: "prediction",
        task,
        format,
        timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        max_retries: 3,
        max_concurrent: 4,
        observer: None,
    })
    .unwrap()
}

fn line(c: &Client, status: u16, body: &str) -> String {
    let mut scratch = Vec::new();
    let o = c.outcome(status, body.as_bytes(), &mut scratch);
    String::from_utf8(c.output_line(br#"{"id":1,"text":"hi"}"#, 0, 42, 1, &o).0).unwrap()
}

#[test]
fn output_has_batch_mode_shape() {
    let c = client(Task::Chat, WireFormat::OpenAi);
    let ok = line(
        &c,
        200,
        r#"{"choices":[{"message":{"role":"assistant","content":"4 \"stars\""}}],"usage":{"total_tokens":9}}"#,
    );
    assert_eq!(
        ok,
        "{\"id\":1,\"text\":\"hi\",\"prediction\":\"4 \\\"stars\\\"\",\"ml_predict\":{\"batch_number\":null,\"batch_id\":null,\"retries\":1,\"custom_id\":\"0-42\",\"status\":\"ok\",\"error\":null}}\n"
    );
    let v: serde_json::Value = serde_json::from_str(&line(
        &c,
        400,
        r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
    ))
    .unwrap();
    assert_eq!(v["prediction"], serde_json::Value::Null);
    assert_eq!(v["ml_predict"]["status"], "error");
    assert_eq!(v["ml_predict"]["error"]["code"], "context_length_exceeded");
    let v: serde_json::Value =
        serde_json::from_str(&line(&c, 413, "length limit exceeded")).unwrap();
    assert_eq!(v["ml_predict"]["error"]["code"], "http_413");
    assert_eq!(v["ml_predict"]["error"]["message"], "length limit exceeded");
    let v: serde_json::Value = serde_json::from_str(&line(&c, 200, "<html>")).unwrap();
    assert_eq!(v["ml_predict"]["error"]["code"], UNEXPECTED_RESPONSE);
}

#[test]
fn embeddings_and_generic() {
    let c = client(Task::Embeddings, WireFormat::OpenAi);
    let v: serde_json::Value = serde_json::from_str(&line(
        &c,
        200,
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1.0]}]}"#,
    ))
    .unwrap();
    assert_eq!(v["prediction"], serde_json::json!([0.5, -1.0]));
    let g = client(Task::Chat, WireFormat::Generic);
    let v: serde_json::Value =
        serde_json::from_str(&line(&g, 200, r#"{"output": "yes"}"#)).unwrap();
    assert_eq!(v["prediction"], "yes");
}

#[test]
fn anthropic_messages_and_errors() {
    let c = client(Task::Chat, WireFormat::Anthropic);
    let v: serde_json::Value = serde_json::from_str(&line(
        &c,
        200,
        r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"4/5"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":3}}"#,
    ))
    .unwrap();
    assert_eq!(v["prediction"], "4/5");
    let v: serde_json::Value = serde_json::from_str(&line(
        &c,
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}"#,
    ))
    .unwrap();
    assert_eq!(v["ml_predict"]["error"]["code"], "invalid_request_error");
    assert_eq!(v["ml_predict"]["error"]["message"], "prompt is too long");
}

#[test]
fn azure_api_version_only_where_it_belongs() {
    let url = |endpoint: &str, version: Option<&str>| {
        Client::new(&Settings {
            endpoint,
            api_key: None,
            auth: Auth::Azure {
                api_version: version,
            },
            pipeline: "p",
            output_field: "prediction",
            task: Task::Chat,
            format: WireFormat::OpenAi,
            timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_retries: 0,
            max_concurrent: 1,
            observer: None,
        })
        .unwrap()
        .url
        .to_string()
    };
    let classic = "https://r.openai.azure.com/openai/deployments/d/chat/completions";
    assert_eq!(
        url(classic, Some("2024-10-21")),
        format!("{classic}?api-version=2024-10-21")
    );
    let v1 = "https://r.openai.azure.com/openai/v1/chat/completions";
    assert_eq!(url(v1, Some("2024-10-21")), v1);
    assert_eq!(
        url(v1, Some("preview")),
        format!("{v1}?api-version=preview")
    );
    assert_eq!(url(classic, None), classic);
}

#[test]
fn backoff_grows_and_caps() {
    assert!(backoff(0) <= BACKOFF_BASE && backoff(0) >= BACKOFF_BASE / 2);
    assert!(backoff(30) <= BACKOFF_CAP);
}

#[test]
fn error_lines_do_not_show_the_key() {
    // A provider that echoes the key in a per-record error (client key:
    // "sk-secret").
    let c = client(Task::Chat, WireFormat::OpenAi);
    let v: serde_json::Value = serde_json::from_str(&line(
        &c,
        400,
        r#"{"error":{"message":"key sk-***cret (SK-SECRET) may not do that","type":"invalid_request_error","code":"forbidden"}}"#,
    ))
    .unwrap();
    let message = v["ml_predict"]["error"]["message"].as_str().unwrap();
    assert_eq!(message, "key [redacted] ([redacted]) may not do that");
}

/// The mock answers a wrong key as OpenAI does, echoing its ends
/// (`Incorrect API key provided: wro***-456.`): the fatal answer, which is
/// logged and printed, shows no fragment of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_fragment_is_not_printed() {
    const KEY: &str = "wrong-key-456";
    let server = mock_server::MockServer::start(mock_server::MockConfig {
        port: 0,
        api_key: Some("sk-the-right-one".into()),
        ..mock_server::MockConfig::default()
    })
    .await
    .unwrap();
    let endpoint = format!("{}/v1/chat/completions", server.base_url());
    let c = Arc::new(
        Client::new(&Settings {
            endpoint: &endpoint,
            api_key: Some(KEY),
            auth: Auth::Bearer,
            pipeline: "p",
            output_field: "prediction",
            task: Task::Chat,
            format: WireFormat::OpenAi,
            timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_retries: 0,
            max_concurrent: 1,
            observer: None,
        })
        .unwrap(),
    );
    let job = Job {
        seq: 0,
        lane: 0,
        pos: 0,
        key: None,
        record: br#"{"text":"hi"}"#.to_vec(),
        body: Bytes::from_static(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        ),
    };
    let (_stop_tx, stop) = watch::channel(false);
    let done = c.call(job, stop).await;
    let Answer::Fatal(text) = done.answer else {
        panic!("a refused key must stop the pipeline");
    };
    assert!(text.contains("check model.api-key"), "{text}");
    assert!(
        text.contains("[redacted]"),
        "the mock echoes the key: {text}"
    );
    for n in 3..=KEY.len() {
        for fragment in [&KEY[..n], &KEY[KEY.len() - n..]] {
            assert!(!text.contains(fragment), "{fragment:?} in {text}");
        }
    }
}

/// Counts what an observer hears: calls, and those that said the provider
/// is over capacity or away.
#[derive(Default)]
struct Heard(std::sync::Mutex<(u32, u32)>);

impl CallObserver for Heard {
    fn note(&self, _call: &'static str, r: &Result<(), ApiError>) {
        let mut h = self.0.lock().unwrap();
        h.0 += 1;
        if r.is_err() {
            h.1 += 1;
        }
    }
}

/// A provider at its requests-per-minute limit answers 429: waiting it out
/// is not the request's failure, so it never uses up `max_retries` (here
/// 0) and every record is answered; the observer hears each 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_without_consuming_retries() {
    let server = mock_server::MockServer::start(mock_server::MockConfig {
        port: 0,
        rpm: Some(4),
        rpm_window: Duration::from_millis(400),
        retry_after: Duration::from_millis(100),
        ..mock_server::MockConfig::default()
    })
    .await
    .unwrap();
    let endpoint = format!("{}/v1/chat/completions", server.base_url());
    let heard = Arc::new(Heard::default());
    let c = Arc::new(
        Client::new(&Settings {
            endpoint: &endpoint,
            api_key: None,
            auth: Auth::Bearer,
            pipeline: "p",
            output_field: "prediction",
            task: Task::Chat,
            format: WireFormat::OpenAi,
            timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            max_retries: 0,
            max_concurrent: 8,
            observer: Some(heard.clone()),
        })
        .unwrap(),
    );
    let (_stop_tx, stop) = watch::channel(false);
    let calls = (0..12u64).map(|i| {
        let job = Job {
            seq: i,
            lane: 0,
            pos: i,
            key: None,
            record: br#"{"text":"hi"}"#.to_vec(),
            body: Bytes::from_static(
                br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            ),
        };
        tokio::spawn(c.clone().call(job, stop.clone()))
    });
    let mut waited = 0;
    for call in calls.collect::<Vec<_>>() {
        let Answer::Emit { ok, retries, .. } = call.await.unwrap().answer else {
            panic!("every record is answered");
        };
        assert!(ok, "a rate limit is no error for the record");
        waited += retries;
    }
    let (heard_calls, refused) = *heard.0.lock().unwrap();
    assert!(refused > 0, "12 calls at 4 per 400 ms must meet the limit");
    assert_eq!(refused, waited, "each 429 is one wait");
    assert_eq!(heard_calls, 12 + refused);
}
