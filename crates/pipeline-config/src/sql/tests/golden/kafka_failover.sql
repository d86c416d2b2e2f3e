-- Kafka in and out, batch mode, FAILOVER: the dead letters go to
-- '{topic}-dlq' unless SET.
CREATE TABLE tickets (id BIGINT, body STRING) WITH (
  'connector' = 'kafka', 'topic' = 'tickets',
  'properties.bootstrap.servers' = '127.0.0.1:19092',
  'scan.startup.mode' = 'group-offsets', 'format' = 'json');
CREATE TABLE triaged (id BIGINT, team STRING) WITH (
  'connector' = 'kafka', 'topic' = 'tickets-triaged',
  'properties.bootstrap.servers' = '127.0.0.1:19092', 'format' = 'json');
CREATE MODEL triage INPUT (body STRING) OUTPUT (team STRING) WITH (
  'provider' = 'openai', 'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions',
  'model' = 'gpt-4o-mini', 'error-handling-strategy' = 'FAILOVER');
INSERT INTO triaged SELECT id, team FROM ML_PREDICT(TABLE tickets, MODEL triage, DESCRIPTOR(body),
  MAP['batch', 'true', 'batch_number', 'triage', 'ml.batch.api.endpoint', 'http://127.0.0.1:8080/v1',
      'ml.batch.max.inflight', '2', 'ml.batch.cleanup.remote', 'false']);
