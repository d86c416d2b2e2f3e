-- No FLIP key: one request per record, as Flink does; the named-argument form.
SET 'pipeline.name' = 'reviews-sync';
SET 'table.exec.async-ml-predict.max-concurrent-operations' = '4';
SET 'table.exec.async-ml-predict.timeout' = '3 min';
SET 'table.exec.async-ml-predict.output-mode' = 'ALLOW_UNORDERED';

CREATE TABLE reviews (id BIGINT, text STRING) WITH ('connector' = 'filesystem', 'path' = 'input.jsonl', 'format' = 'json');
CREATE TABLE scored (id BIGINT, text STRING, answer STRING, ml_predict STRING)
  WITH ('connector' = 'filesystem', 'path' = 'scored.jsonl', 'format' = 'json');
CREATE MODEL m INPUT (text STRING) OUTPUT (answer STRING) WITH (
  'provider' = 'openai', 'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions',
  'api-key' = 'sk-literal', 'model' = 'gpt-4o-mini');

INSERT INTO scored
SELECT id, text, answer FROM ML_PREDICT(
  INPUT => TABLE reviews,
  MODEL => MODEL m,
  ARGS => DESCRIPTOR(text),
  CONFIG => MAP['async', 'true', 'max-concurrent-operations', '8', 'output-mode', 'ORDERED', 'timeout', '20s']);
