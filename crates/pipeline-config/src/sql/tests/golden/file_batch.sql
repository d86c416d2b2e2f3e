-- A Flink job, unchanged, plus the FLIP's batch keys in ML_PREDICT's MAP.
/* keywords in any case, backquoted names */
SET 'ml.batch.local.dir' = 'work/local';

CREATE TABLE `reviews` (
  id BIGINT,
  `text` STRING,
  meta ROW<n BIGINT>
) WITH (
  'connector' = 'filesystem',
  'path' = 'input.jsonl',
  'format' = 'json'
);

create table scored (
  id BIGINT,
  `text` STRING,
  meta ROW<n BIGINT>,
  prediction STRING,
  ml_predict ROW<batch_number STRING, status STRING>
) with (
  'connector' = 'filesystem',
  'path' = 'out/scored',
  'format' = 'json'
);

CREATE TEMPORARY MODEL rater
INPUT (`text` STRING)
OUTPUT (prediction STRING)
WITH (
  'provider' = 'openai',
  'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions',
  'api-key' = '${OPENAI_API_KEY}',
  'model' = 'gpt-4o-mini',
  'system-prompt' = 'Rate the review. It''s fine.',
  'temperature' = '0.2',
  'max-tokens' = '64',
  'error-handling-strategy' = 'RETRY',
  'retry-num' = '5',
  'retry-fallback-strategy' = 'IGNORE'
);

INSERT INTO scored
SELECT * FROM ML_PREDICT(
  TABLE reviews,
  MODEL rater,
  DESCRIPTOR(`text`),
  MAP['batch', 'true',
      'batch_number', 'rev',
      'ml.batch.api.endpoint', 'http://127.0.0.1:8080/v1',
      'ml.batch.size', '50',
      'ml.batch.max.wait', '500ms',
      'ml.batch.poll.interval', '200ms']
);
