//! Topic creation: the state topic (compacted, partitioned like the input)
//! and the output and dead-letter topics, when they are missing.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::consumer::base_config;
use crate::Settings;

pub(crate) fn ensure_topics(
    s: &Settings,
    partitions: i32,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(&s.bootstrap, &s.producer_props)
        .create()
        .context("cannot create the kafka admin client")?;
    let mut wanted: Vec<NewTopic<'_>> =
        vec![
            NewTopic::new(&s.state_topic, partitions, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact")
                .set("min.compaction.lag.ms", "60000"),
        ];
    let mut names: BTreeSet<&str> = BTreeSet::from([s.state_topic.as_str()]);
    for t in [Some(&s.output_topic), s.dlq_topic.as_ref()]
        .into_iter()
        .flatten()
    {
        if names.insert(t) {
            wanted.push(NewTopic::new(t, partitions, TopicReplication::Fixed(-1)));
        }
    }
    let opts = AdminOptions::new().operation_timeout(Some(s.timeout));
    let results = rt
        .block_on(admin.create_topics(wanted.iter(), &opts))
        .context("cannot create kafka topics")?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create kafka topic {name}: {code}"),
        }
    }
    Ok(())
}
