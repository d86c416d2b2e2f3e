use super::*;

fn settings(props: &[(&str, &str)]) -> Settings {
    Settings {
        // Nothing listens there: creating a client does not connect.
        bootstrap: "127.0.0.1:9".into(),
        input_topic: "in".into(),
        group_id: "g".into(),
        output_topic: "out".into(),
        dlq_topic: None,
        state_topic: "state".into(),
        consumer_props: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        producer_props: BTreeMap::new(),
        transactional_id: "t".into(),
        group_instance_id: Some("i".into()),
        timeout: Duration::from_secs(1),
    }
}

fn get(c: &ClientConfig, key: &str) -> Option<String> {
    c.get(key).map(str::to_owned)
}

#[test]
fn our_group_timing_defaults_when_the_user_sets_none() {
    let c = group_config(&settings(&[]));
    assert_eq!(get(&c, "session.timeout.ms").as_deref(), Some("10000"));
    assert_eq!(get(&c, "heartbeat.interval.ms").as_deref(), Some("1000"));
    assert_eq!(get(&c, "max.poll.interval.ms").as_deref(), Some("300000"));
}

#[test]
fn user_properties_reach_every_consumer_and_win() {
    let s = settings(&[
        ("max.poll.interval.ms", "20000"),
        ("security.protocol", "plaintext"),
    ]);
    for c in [group_config(&s), reader_config(&s)] {
        assert_eq!(get(&c, "max.poll.interval.ms").as_deref(), Some("20000"));
        assert_eq!(get(&c, "security.protocol").as_deref(), Some("plaintext"));
        assert_eq!(get(&c, "session.timeout.ms").as_deref(), Some("10000"));
    }
}

/// librdkafka checks the timing keys against each other when a consumer is
/// created (issue 13: `source."max.poll.interval.ms" = "20000"` alone made
/// the state reader fail, its session timeout being librdkafka's 45 s).
#[test]
fn every_consumer_accepts_any_one_timing_key_set_alone() {
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("max.poll.interval.ms", "20000")],
        &[("max.poll.interval.ms", "5000")],
        &[("session.timeout.ms", "60000")],
        &[("session.timeout.ms", "6000")],
        &[("heartbeat.interval.ms", "500")],
        &[
            ("max.poll.interval.ms", "20000"),
            ("session.timeout.ms", "15000"),
        ],
    ];
    for props in cases {
        let s = settings(props);
        if let Err(e) = group_consumer(&s) {
            panic!("group consumer with {props:?}: {e:#}");
        }
        if let Err(e) = Reader::new(&s) {
            panic!("reader with {props:?}: {e:#}");
        }
        if let Err(e) = StateReader::connect(&s) {
            panic!("state reader with {props:?}: {e:#}");
        }
    }
}

#[test]
fn defaults_follow_a_short_max_poll_interval() {
    let d: BTreeMap<_, _> =
        group_timing_defaults(&settings(&[("max.poll.interval.ms", "5000")]).consumer_props)
            .into_iter()
            .collect();
    assert_eq!(
        d.get("session.timeout.ms").map(String::as_str),
        Some("5000")
    );
    assert_eq!(
        d.get("heartbeat.interval.ms").map(String::as_str),
        Some("1000")
    );
    assert!(
        !d.contains_key("max.poll.interval.ms"),
        "the user's value stays"
    );
}
