//! `[pricing]`: per-model prices on top of the built-in ones.

use super::*;

#[test]
fn pricing_entries_from_toml_and_overrides() {
    let c = ok(
        &min_with(
            "[pricing.\"gpt-4o-mini\"]\ninput = 0.2\noutput = 1\n\n[pricing.\"gpt-4.1\"]\ninput = 2.0\noutput = 8.0\nbatch-discount = 0.25",
        ),
        &["pricing.\"my-deployment\".input=1", "pricing.my-deployment.output=3.5"],
    );
    let mini = c.pricing.price("gpt-4o-mini").unwrap();
    assert_eq!(
        (mini.input, mini.output, mini.batch_output),
        (0.2, 1.0, 0.5)
    );
    assert_eq!(c.pricing.price("gpt-4.1").unwrap().batch_input, 1.5);
    assert_eq!(c.pricing.price("my-deployment").unwrap().output, 3.5);
    // without a [pricing] table: the built-in prices
    let plain = ok(MIN, &[]);
    assert_eq!(plain.pricing, ::pricing::Pricing::builtin());
}

#[test]
fn pricing_errors_name_the_key() {
    assert_err(
        &min_with("[pricing.\"gpt-4o-mini\"]\ninput = \"cheap\"\noutput = 1"),
        &[],
        "pricing.\"gpt-4o-mini\".input: expected a number of USD per 1M tokens, at least 0, got \"cheap\"",
    );
    let e = assert_err_key(
        &min_with("[pricing.\"gpt-4o-mini\"]\ninput = 0.1"),
        &[],
        "pricing.\"gpt-4o-mini\".output",
    );
    assert!(e.to_string().contains("missing"), "{e}");
    assert_err_key(
        MIN,
        &[
            "pricing.m.input=1",
            "pricing.m.output=1",
            "pricing.m.inptu=1",
        ],
        "pricing.\"m\".inptu",
    );
}
