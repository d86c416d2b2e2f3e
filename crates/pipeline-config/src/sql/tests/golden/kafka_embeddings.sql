CREATE TABLE docs (
  id BIGINT, body STRING, tags ARRAY<STRING>, attrs MAP<STRING, STRING>, score DOUBLE, ok BOOLEAN, n INT
) WITH (
  'connector' = 'kafka',
  'topic' = 'docs',
  'properties.bootstrap.servers' = '127.0.0.1:19092',
  'properties.group.id' = 'docs-ml',
  'properties.fetch.min.bytes' = '1',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);
CREATE TABLE vectors (
  id BIGINT, body STRING, tags ARRAY<STRING>, attrs MAP<STRING, STRING>, score DOUBLE, ok BOOLEAN, n INT,
  embedding ARRAY<FLOAT>
) WITH (
  'connector' = 'kafka',
  'topic' = 'docs-vectors',
  'properties.bootstrap.servers' = '127.0.0.1:19092',
  'properties.compression.type' = 'zstd',
  'sink.delivery-guarantee' = 'exactly-once',
  'sink.transactional-id-prefix' = 'docs-embed',
  'value.format' = 'json'
);
CREATE MODEL embedder INPUT (body STRING) OUTPUT (embedding ARRAY<FLOAT>) WITH (
  'provider' = 'openai',
  'endpoint' = 'http://127.0.0.1:8080/v1/embeddings',
  'model' = 'text-embedding-3-small',
  'dimension' = '256',
  'error-handling-strategy' = 'IGNORE'
);
SET 'metrics.port' = '0';
SET 'sink.dlq.topic' = 'docs-dead';
INSERT INTO vectors SELECT * FROM ML_PREDICT(TABLE docs, MODEL embedder, DESCRIPTOR(body),
  MAP['batch', 'true', 'ml.batch.api.endpoint', 'http://127.0.0.1:8080/v1', 'ml.batch.size', '1000']);
