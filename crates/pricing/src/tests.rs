use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn entries(list: &[(&'static str, f64)]) -> Vec<(&'static str, RawValue)> {
    list.iter()
        .map(|&(k, v)| (k, RawValue::Number(v)))
        .collect()
}

fn error(list: Vec<(&'static str, RawValue)>) -> String {
    Pricing::with_entries(list).unwrap_err().to_string()
}

#[test]
fn builtin_prices_cost_what_the_list_says() {
    let p = Pricing::builtin();
    let usage = Usage::new(1_000_000, 1_000_000);
    assert!(close(
        p.cost_usd("gpt-4o-mini", usage, false).unwrap(),
        0.75
    ));
    assert!(close(
        p.cost_usd("gpt-4o-mini", usage, true).unwrap(),
        0.375
    ));
    assert!(close(p.saved_usd("gpt-4o-mini", usage).unwrap(), 0.375));
    // 2,000 prompt + 100 completion tokens of gpt-4o-mini per record
    let one = p
        .cost_usd("gpt-4o-mini", Usage::new(2000, 100), false)
        .unwrap();
    assert!(close(one, (2000.0 * 0.15 + 100.0 * 0.60) / 1e6));
    assert_eq!(
        p.price("claude-haiku-4-5").unwrap().source,
        Source::BuiltIn {
            as_of: BUILTIN_AS_OF
        }
    );
    for (model, price) in p.models() {
        assert!(price.batch_input <= price.input, "{model}");
        assert!(price.batch_output <= price.output, "{model}");
    }
}

#[test]
fn an_unknown_model_has_no_cost_not_a_guess() {
    let p = Pricing::builtin();
    let usage = Usage::new(10, 10);
    assert_eq!(p.cost_usd("my-azure-deployment", usage, true), None);
    assert_eq!(p.estimate_usd("my-azure-deployment", 10, 10, false), None);
    assert_eq!(p.saved_usd("my-azure-deployment", usage), None);
    // a dated snapshot is another model: its price may differ
    assert_eq!(p.cost_usd("gpt-4o-2024-05-13", usage, false), None);
}

#[test]
fn estimate_counts_the_most_output_a_request_may_have() {
    let p = Pricing::builtin();
    let est = p.estimate_usd("gpt-4o", 1000, 500, true).unwrap();
    assert!(close(est, (1000.0 * 1.25 + 500.0 * 5.0) / 1e6));
    let sync = p.estimate_usd("gpt-4o", 1000, 500, false).unwrap();
    assert!(close(sync, 2.0 * est));
}

#[test]
fn config_entries_add_and_replace_models() {
    let p = Pricing::with_entries(entries(&[
        ("gpt-4o-mini.input", 0.2),
        ("gpt-4o-mini.output", 0.8),
        ("\"gpt-4.1\".input", 2.0),
        ("\"gpt-4.1\".output", 8.0),
        ("\"gpt-4.1\".batch-discount", 0.25),
        ("my-deployment.input", 1.0),
        ("my-deployment.output", 2.0),
        ("my-deployment.batch-input", 0.9),
        ("my-deployment.batch-output", 1.5),
        // unquoted with dots, as TOML's `[pricing."o4.x"]` flattens
        ("o4.x.input", 3.0),
        ("o4.x.output", 4.0),
    ]))
    .unwrap();
    let mini = p.price("gpt-4o-mini").unwrap();
    assert_eq!((mini.input, mini.output), (0.2, 0.8));
    assert_eq!((mini.batch_input, mini.batch_output), (0.1, 0.4));
    assert_eq!(mini.source, Source::Config);
    let g = p.price("gpt-4.1").unwrap();
    assert_eq!((g.batch_input, g.batch_output), (1.5, 6.0));
    let d = p.price("my-deployment").unwrap();
    assert_eq!((d.batch_input, d.batch_output), (0.9, 1.5));
    assert_eq!(p.price("o4.x").unwrap().output, 4.0);
    // built-ins not named stay
    assert!(p.price("gpt-4o").is_some());
}

#[test]
fn a_free_model_costs_zero_not_null() {
    let p = Pricing::with_entries(entries(&[("local.input", 0.0), ("local.output", 0.0)])).unwrap();
    assert_eq!(p.cost_usd("local", Usage::new(5, 5), true), Some(0.0));
}

#[test]
fn validation_messages_name_the_key() {
    let cases: Vec<(Vec<(&'static str, RawValue)>, &str)> = vec![
        (
            vec![("gpt-4o-mini.input", RawValue::Other("\"cheap\"".into()))],
            "pricing.\"gpt-4o-mini\".input: expected a number of USD per 1M tokens, at least 0, got \"cheap\"",
        ),
        (
            entries(&[("gpt-4o-mini.input", -1.0), ("gpt-4o-mini.output", 1.0)]),
            "pricing.\"gpt-4o-mini\".input: expected a number of USD per 1M tokens, at least 0, got -1",
        ),
        (
            entries(&[("gpt-4o-mini.input", 0.1)]),
            "pricing.\"gpt-4o-mini\".output: missing: an entry [pricing.\"gpt-4o-mini\"] needs input and output",
        ),
        (
            entries(&[("m.input", 1.0), ("m.output", 1.0), ("m.batch", 0.5)]),
            "pricing.\"m\".batch: unknown field (expected input, output, batch-input, batch-output or batch-discount)",
        ),
        (
            entries(&[("m.input", 1.0), ("m.output", 1.0), ("m.batch-discount", 1.5)]),
            "pricing.\"m\".batch-discount: expected a number from 0 to 1, got 1.5",
        ),
        (
            entries(&[
                ("m.input", 1.0),
                ("m.output", 1.0),
                ("m.batch-discount", 0.5),
                ("m.batch-input", 0.5),
            ]),
            "pricing.\"m\".batch-discount: give either batch-discount or batch-input and batch-output, not both",
        ),
        (
            entries(&[("m.input", 1.0), ("m.output", 1.0), ("m.batch-input", 0.5)]),
            "pricing.\"m\".batch-output: missing: batch-input is given, so batch-output is needed too",
        ),
        (
            entries(&[("gpt-4o-mini", 0.15)]),
            "pricing.\"gpt-4o-mini\": expected a table [pricing.\"gpt-4o-mini\"] with input and output (USD per 1M tokens)",
        ),
        (
            vec![("m.input", RawValue::Number(f64::NAN))],
            "pricing.\"m\".input: expected a number of USD per 1M tokens, at least 0, got NaN",
        ),
    ];
    for (list, want) in cases {
        assert_eq!(error(list), want);
    }
}

#[test]
fn the_error_carries_the_key() {
    let e = Pricing::with_entries(entries(&[("x.input", 1.0)])).unwrap_err();
    assert_eq!(e.key, "pricing.\"x\".output");
}
